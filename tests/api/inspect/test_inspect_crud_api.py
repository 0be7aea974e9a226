"""inspect projects, media, snapshots, sources and sinks over HTTP (ASGI, no Ray)."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from visionserve.api.app import create_app
from visionserve.platform.context import build_context
from visionserve.surfaces import load_surface

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def client(settings):  # type: ignore[no-untyped-def]
    ctx = build_context(settings)
    app = create_app(ctx, [load_surface("inspect")])
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://127.0.0.1:8000/inspect/api",
        timeout=60,
    )


def png(width: int, height: int, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    img = Image.new("RGB", (width, height), color)
    img.putpixel((0, 0), (1, 2, 3))  # not a flat colour, so round-trips are meaningful
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buf, "JPEG")
    return buf.getvalue()


async def new_project(client: httpx.AsyncClient, name: str = "Manufacturing QC") -> dict:
    r = await client.post("/projects", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()


async def upload(
    client: httpx.AsyncClient, project_id: str, files: list[tuple[str, bytes]], label: str
) -> httpx.Response:
    return await client.post(
        f"/projects/{project_id}/media",
        files=[("files", (name, data, "application/octet-stream")) for name, data in files],
        data={"label": label},
    )


# --- projects ------------------------------------------------------------------------------


async def test_project_crud(client: httpx.AsyncClient) -> None:
    assert (await client.get("/projects")).json() == []
    project = await new_project(client)
    assert set(project) >= {"id", "name", "created_at", "updated_at"}
    assert project["name"] == "Manufacturing QC"

    r = await client.get(f"/projects/{project['id']}")
    assert r.status_code == 200 and r.json() == project
    assert [p["id"] for p in (await client.get("/projects")).json()] == [project["id"]]

    r = await client.patch(f"/projects/{project['id']}", json={"name": "Updated Project Name"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Updated Project Name"
    assert r.json()["updated_at"] >= project["updated_at"]
    assert (await client.get(f"/projects/{project['id']}")).json()["name"] == "Updated Project Name"

    r = await client.delete(f"/projects/{project['id']}")
    assert r.status_code == 204 and r.content == b""
    r = await client.get(f"/projects/{project['id']}")
    assert r.status_code == 404 and "detail" in r.json()
    assert (await client.get("/projects")).json() == []


async def test_project_errors(client: httpx.AsyncClient) -> None:
    first = await new_project(client, "A")
    second = await new_project(client, "B")
    r = await client.post("/projects", json={"name": "A"})
    assert r.status_code == 409 and isinstance(r.json()["detail"], str)
    r = await client.patch(f"/projects/{second['id']}", json={"name": "A"})
    assert r.status_code == 409
    # Renaming a project to its own name is not a conflict.
    assert (await client.patch(f"/projects/{first['id']}", json={"name": "A"})).status_code == 200

    for body in ({}, {"name": ""}, {"name": "x" * 201}, {"name": 5}, {"name": "a", "extra": 1}):
        r = await client.post("/projects", json=body)
        assert r.status_code == 422, body
        assert isinstance(r.json()["detail"], list)
    assert (await client.patch(f"/projects/{first['id']}", json={"name": ""})).status_code == 422

    missing = "00000000-0000-0000-0000-000000000000"
    assert (await client.get(f"/projects/{missing}")).status_code == 404
    assert (await client.patch(f"/projects/{missing}", json={"name": "z"})).status_code == 404
    assert (await client.delete(f"/projects/{missing}")).status_code == 404


# --- media ---------------------------------------------------------------------------------


async def test_upload_with_per_file_failures(client: httpx.AsyncClient) -> None:
    project = await new_project(client)
    good = [("wide.png", png(640, 320)), ("tall.png", png(100, 400)), ("small.png", png(40, 30))]
    truncated = png(300, 300)[:200]
    files = [
        *good,
        ("notes.txt", b"this is not an image\n"),
        ("broken.png", truncated),
        ("photo.jpg", jpeg(512, 512)),
    ]
    r = await upload(client, project["id"], files, "normal")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["uploaded"] == 4 and body["failed"] == 2
    assert [m["filename"] for m in body["items"]] == [
        "wide.png",
        "tall.png",
        "small.png",
        "photo.jpg",
    ]
    assert {e["filename"] for e in body["errors"]} == {"notes.txt", "broken.png"}
    assert all(e["detail"] for e in body["errors"])
    sizes = {m["filename"]: (m["width"], m["height"]) for m in body["items"]}
    assert sizes == {
        "wide.png": (640, 320),
        "tall.png": (100, 400),
        "small.png": (40, 30),
        "photo.jpg": (512, 512),
    }
    assert all(m["label"] == "normal" for m in body["items"])
    assert {m["content_type"] for m in body["items"]} == {"image/png", "image/jpeg"}


async def test_image_bytes_round_trip_and_thumbnails(client: httpx.AsyncClient) -> None:
    project = await new_project(client)
    originals = {"wide.png": png(640, 320), "tall.png": png(100, 400), "small.png": png(40, 30)}
    originals["photo.jpg"] = jpeg(300, 600)
    r = await upload(client, project["id"], list(originals.items()), "anomalous")
    assert r.status_code == 201, r.text
    expected_thumbs = {
        "wide.png": (256, 128),
        "tall.png": (64, 256),
        "small.png": (40, 30),  # never enlarged
        "photo.jpg": (128, 256),
    }
    for item in r.json()["items"]:
        got = await client.get(f"/media/{item['id']}")
        assert got.status_code == 200
        assert got.content == originals[item["filename"]]
        assert got.headers["content-type"] == item["content_type"]

        assert item["thumbnail_url"] == f"/media/thumbnails/{item['id']}.png"
        thumb = await client.get(item["thumbnail_url"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
        img = Image.open(io.BytesIO(thumb.content))
        assert img.format == "PNG"
        assert img.size == expected_thumbs[item["filename"]]


async def test_media_list_filters_and_pagination(client: httpx.AsyncClient) -> None:
    project = await new_project(client)
    other = await new_project(client, "Other")
    normal = [(f"n{k}.png", png(20 + k, 20)) for k in range(5)]
    anomalous = [(f"a{k}.png", png(20, 20 + k)) for k in range(3)]
    assert (await upload(client, project["id"], normal, "normal")).status_code == 201
    assert (await upload(client, project["id"], anomalous, "anomalous")).status_code == 201
    assert (await upload(client, other["id"], [("x.png", png(8, 8))], "normal")).status_code == 201

    url = f"/projects/{project['id']}/media"
    page = (await client.get(url)).json()
    assert page["total"] == 8 and page["limit"] == 20 and page["offset"] == 0
    assert len(page["items"]) == 8

    seen: list[str] = []
    for offset in range(0, 8, 3):
        r = await client.get(url, params={"limit": 3, "offset": offset})
        assert r.status_code == 200
        chunk = r.json()
        assert chunk["total"] == 8 and chunk["limit"] == 3 and chunk["offset"] == offset
        seen += [m["id"] for m in chunk["items"]]
    assert seen == [m["id"] for m in page["items"]]  # stable order, no gaps or repeats

    r = await client.get(url, params={"label": "anomalous"})
    assert r.json()["total"] == 3
    assert {m["filename"] for m in r.json()["items"]} == {"a0.png", "a1.png", "a2.png"}
    r = await client.get(url, params={"label": "normal", "limit": 2, "offset": 4})
    assert r.json()["total"] == 5 and [m["filename"] for m in r.json()["items"]] == ["n4.png"]
    assert (await client.get(url, params={"offset": 100})).json()["items"] == []

    for params in ({"label": "weird"}, {"limit": 0}, {"limit": 1001}, {"offset": -1}):
        r = await client.get(url, params=params)
        assert r.status_code == 422, params
    missing = "/projects/00000000-0000-0000-0000-000000000000/media"
    assert (await client.get(missing)).status_code == 404


async def test_upload_errors(client: httpx.AsyncClient) -> None:
    project = await new_project(client)
    url = f"/projects/{project['id']}/media"
    one = [("files", ("a.png", png(10, 10), "image/png"))]
    assert (await client.post(url, files=one)).status_code == 422  # no label
    assert (await client.post(url, files=one, data={"label": "good"})).status_code == 422
    assert (await client.post(url, data={"label": "normal"})).status_code == 422  # no files
    r = await upload(
        client, "00000000-0000-0000-0000-000000000000", [("a.png", png(4, 4))], "normal"
    )
    assert r.status_code == 404
    # Only failures: still the contract's 201 with counts, and nothing stored.
    r = await upload(client, project["id"], [("a.txt", b"hello")], "normal")
    assert r.status_code == 201 and r.json()["uploaded"] == 0 and r.json()["failed"] == 1
    assert (await client.get(url)).json()["total"] == 0


async def test_delete_media_and_project_removes_blobs(client: httpx.AsyncClient, settings) -> None:  # type: ignore[no-untyped-def]
    project = await new_project(client)
    r = await upload(
        client, project["id"], [("a.png", png(30, 30)), ("b.png", png(9, 9))], "normal"
    )
    first, second = r.json()["items"]
    r = await client.delete(f"/media/{first['id']}")
    assert r.status_code == 204 and r.content == b""
    assert (await client.get(f"/media/{first['id']}")).status_code == 404
    assert (await client.get(first["thumbnail_url"])).status_code == 404
    assert (await client.delete(f"/media/{first['id']}")).status_code == 404
    assert (await client.get(f"/projects/{project['id']}/media")).json()["total"] == 1

    blobs = settings.blobs.local_dir
    prefix = blobs / "inspect" / "projects" / project["id"]
    assert prefix.is_dir()
    assert (await client.delete(f"/projects/{project['id']}")).status_code == 204
    assert (await client.get(f"/media/{second['id']}")).status_code == 404
    assert not prefix.exists()


async def test_openapi_declares_image_responses(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    media = spec["paths"]["/media/{media_id}"]["get"]["responses"]["200"]["content"]
    assert {"image/png", "image/jpeg"} <= set(media)
    thumb = spec["paths"]["/media/thumbnails/{media_id}.png"]["get"]["responses"]["200"]
    assert set(thumb["content"]) == {"image/png"}


# --- snapshots -----------------------------------------------------------------------------


async def test_snapshots(client: httpx.AsyncClient) -> None:
    project = await new_project(client)
    url = f"/projects/{project['id']}/snapshots"
    assert (await client.get(url)).json() == []
    files = [(f"{k}.png", png(10, 10)) for k in range(3)]
    assert (await upload(client, project["id"], files, "normal")).status_code == 201

    r = await client.post(url, json={"name": "Training Set v1"})
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["name"] == "Training Set v1" and first["media_count"] == 3
    assert set(first) >= {"id", "name", "media_count", "created_at"}

    # Frozen: later uploads and deletes do not change an existing snapshot.
    r = await upload(client, project["id"], [("late.png", png(5, 5))], "anomalous")
    await client.delete(f"/media/{r.json()['items'][0]['id']}")
    await upload(client, project["id"], [("later.png", png(5, 5))], "anomalous")
    second = (await client.post(url, json={"name": "Training Set v2"})).json()
    assert second["media_count"] == 4
    listed = (await client.get(url)).json()
    assert [(s["name"], s["media_count"]) for s in listed] == [
        ("Training Set v1", 3),
        ("Training Set v2", 4),
    ]

    assert (await client.post(url, json={"name": "Training Set v1"})).status_code == 409
    assert (await client.post(url, json={})).status_code == 422
    assert (await client.post(url, json={"name": ""})).status_code == 422
    missing = "/projects/00000000-0000-0000-0000-000000000000/snapshots"
    assert (await client.get(missing)).status_code == 404
    assert (await client.post(missing, json={"name": "x"})).status_code == 404


# --- sources and sinks ---------------------------------------------------------------------

SOURCES = [
    {"type": "webcam", "name": "USB Camera", "config": {"device_index": 1}},
    {
        "type": "ip_camera",
        "name": "RTSP Stream",
        "config": {"url": "rtsp://user:pass@192.168.1.100:554/stream"},
    },
    {
        "type": "video_file",
        "name": "Test Video",
        # Relative: under <home>/inspect/videos, the only folder sources read by default.
        "config": {"path": "path/to/video.mp4", "loop": True},
    },
]
SINKS = [
    {
        "type": "webhook",
        "name": "Alert System",
        "config": {
            "url": "https://alerts.example.com/anomaly",
            "method": "POST",
            "headers": {"Authorization": "Bearer token"},
        },
    },
    {
        "type": "mqtt",
        "name": "MQTT Broker",
        "config": {
            "broker": "mqtt://broker.example.com:1883",
            "topic": "anomaly/alerts",
            "username": "user",
            "password": "pass",
        },
    },
    {
        "type": "filesystem",
        "name": "Local Storage",
        # Relative: under <home>/inspect/output, the only folder sinks write by default.
        "config": {"output_dir": "data/anomalies", "save_images": True},
    },
]
BAD_SOURCES = [
    {"type": "usb", "name": "x", "config": {}},
    {"type": "webcam", "name": "x", "config": {"device_index": -1}},
    {"type": "ip_camera", "name": "x", "config": {}},
    {"type": "ip_camera", "name": "x", "config": {"url": "not a url"}},
    {"type": "video_file", "name": "x", "config": {"loop": True}},
    {"type": "webcam", "name": "", "config": {}},
    {"type": "webcam", "name": "x", "config": {"device_index": 0, "fps": 30}},
]
BAD_SINKS = [
    {"type": "email", "name": "x", "config": {}},
    {"type": "webhook", "name": "x", "config": {"url": "ftp://example.com"}},
    {"type": "webhook", "name": "x", "config": {"url": "https://a.example", "method": "GET"}},
    {"type": "mqtt", "name": "x", "config": {"broker": "mqtt://b:1883"}},
    {"type": "filesystem", "name": "x", "config": {}},
]


@pytest.mark.parametrize(
    ("kind", "bodies", "bad"), [("sources", SOURCES, BAD_SOURCES), ("sinks", SINKS, BAD_SINKS)]
)
async def test_sources_and_sinks(
    client: httpx.AsyncClient, kind: str, bodies: list[dict], bad: list[dict]
) -> None:
    project = await new_project(client)
    url = f"/projects/{project['id']}/{kind}"
    assert (await client.get(url)).json() == []
    created = []
    for body in bodies:
        r = await client.post(url, json=body)
        assert r.status_code == 201, r.text
        out = r.json()
        if body["type"] == "webhook":  # webhook sinks always get a signing secret
            assert out["config"].pop("secret").startswith("whsec_")
        assert {k: out[k] for k in ("type", "name", "config")} == body
        assert out["id"] and out["project_id"] == project["id"]
        out["config"] = (await client.get(url)).json()[len(created)]["config"]
        created.append(out)
    assert (await client.get(url)).json() == created

    assert (await client.post(url, json=bodies[0])).status_code == 409
    other = await new_project(client, "Other")
    # Names are unique per project only.
    assert (await client.post(f"/projects/{other['id']}/{kind}", json=bodies[0])).status_code == 201
    for body in bad:
        r = await client.post(url, json=body)
        assert r.status_code == 422, body
        assert isinstance(r.json()["detail"], list)
    missing = f"/projects/00000000-0000-0000-0000-000000000000/{kind}"
    assert (await client.get(missing)).status_code == 404
    assert (await client.post(missing, json=bodies[0])).status_code == 404

    r = await client.delete(f"/{kind}/{created[0]['id']}")
    assert r.status_code == 204 and r.content == b""
    assert [x["id"] for x in (await client.get(url)).json()] == [c["id"] for c in created[1:]]
    assert (await client.delete(f"/{kind}/{created[0]['id']}")).status_code == 404

    # Deleting the project takes its sources and sinks with it.
    assert (await client.delete(f"/projects/{project['id']}")).status_code == 204
    assert (await client.delete(f"/{kind}/{created[1]['id']}")).status_code == 404


async def test_source_defaults(client: httpx.AsyncClient) -> None:
    project = await new_project(client)
    r = await client.post(
        f"/projects/{project['id']}/sources", json={"type": "webcam", "name": "Built-in Camera"}
    )
    assert r.status_code == 201 and r.json()["config"] == {"device_index": 0}
    r = await client.post(
        f"/projects/{project['id']}/sinks",
        json={"type": "webhook", "name": "Hook", "config": {"url": "https://a.example/x"}},
    )
    assert r.status_code == 201
    config = r.json()["config"]
    assert len(config.pop("secret")) == len("whsec_") + 48  # generated: every webhook signs
    assert config == {"url": "https://a.example/x", "method": "POST", "headers": {}}


async def test_file_paths_stay_inside_the_configured_roots(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings.inspect.video_roots = [tmp_path / "videos"]
    settings.inspect.output_roots = [tmp_path / "alerts"]
    ctx = build_context(settings)
    app = create_app(ctx, [load_surface("inspect")])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t/inspect/api"
    ) as c:
        project = await new_project(c)
        sources = f"/projects/{project['id']}/sources"
        ok = {"type": "video_file", "name": "a", "config": {"path": str(tmp_path / "videos/a.mp4")}}
        assert (await c.post(sources, json=ok)).status_code == 201
        sneaky = str(tmp_path / "videos/../../etc/passwd")
        r = await c.post(
            sources, json={"type": "video_file", "name": "b", "config": {"path": sneaky}}
        )
        assert r.status_code == 422 and "outside the allowed folders" in r.json()["detail"]
        sinks = f"/projects/{project['id']}/sinks"
        r = await c.post(
            sinks, json={"type": "filesystem", "name": "c", "config": {"output_dir": "/etc"}}
        )
        assert r.status_code == 422
        inside = {"output_dir": str(tmp_path / "alerts/line1")}
        r = await c.post(sinks, json={"type": "filesystem", "name": "d", "config": inside})
        assert r.status_code == 201
