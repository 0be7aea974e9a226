"""inspect sources and sinks stay in their folders and off internal addresses; secrets
are write-only (ASGI, no Ray).

The shared ``settings`` fixture allow-lists 127.0.0.1 for other tests; the tests here
that need loopback refused clear ``egress.allow`` first.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.inspect.test_inspect_crud_api import new_project
from tests.api.inspect.test_inspect_models_api import ready_model
from visionserve.api.app import create_app
from visionserve.platform import egress
from visionserve.platform.context import build_context
from visionserve.store.db import session_scope
from visionserve.surfaces import load_surface
from visionserve.surfaces.inspect.records import InspectActivePipeline, InspectSink, InspectSource

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

MASK = "********"


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """A fake DNS: host name -> addresses; any other name does not resolve."""
    answers: dict[str, list[str]] = {}

    def resolve(host: str) -> list[str]:
        if host not in answers:
            raise OSError(f"unknown host {host}")
        return answers[host]

    monkeypatch.setattr(egress, "resolve_host", resolve)
    yield answers


@pytest.fixture
def make_client(settings) -> Callable[[], httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    """A client over the settings as the test left them (call it after changing them)."""

    def make() -> httpx.AsyncClient:
        app = create_app(build_context(settings), [load_surface("inspect")])
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t/inspect/api", timeout=60
        )

    return make


async def post(
    c: httpx.AsyncClient, url: str, type_: str, config: dict[str, Any]
) -> httpx.Response:
    """Create a source or sink under a fresh name."""
    return await c.post(url, json={"type": type_, "name": uuid.uuid4().hex[:12], "config": config})


def assert_refused(r: httpx.Response, *needles: str) -> None:
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str)  # the contract's error format
    for needle in needles:
        assert needle in detail, detail


# --- files -------------------------------------------------------------------------------


async def test_video_paths_stay_under_the_video_root(settings, make_client) -> None:  # type: ignore[no-untyped-def]
    root = settings.home / "inspect" / "videos"
    root.mkdir(parents=True)
    secret = settings.home / "secret.mp4"
    secret.write_bytes(b"not for clients")
    (root / "escape.mp4").symlink_to(secret)
    (root / "up").symlink_to(settings.home)
    (root / "line1.mp4").write_bytes(b"x")
    (root / "current.mp4").symlink_to(root / "line1.mp4")

    async with make_client() as c:
        project = await new_project(c)
        url = f"/projects/{project['id']}/sources"
        for path in (
            "/etc/passwd",
            "../../etc/passwd",
            "../secret.mp4",
            str(root / ".." / ".." / "secret.mp4"),
            "escape.mp4",  # a symlink inside the root that leads out of it
            "up/secret.mp4",  # a folder symlink that leads out
        ):
            r = await post(c, url, "video_file", {"path": path})
            assert_refused(r, "outside the allowed folders", str(root), "VIDEO_ROOTS")

        for path in ("line1.mp4", str(root / "line1.mp4"), "current.mp4", "new/later.mp4"):
            r = await post(c, url, "video_file", {"path": path})
            assert r.status_code == 201, r.text
            assert r.json()["config"]["path"] == path  # stored as given
        assert len((await c.get(url)).json()) == 4


async def test_extra_video_roots_from_settings(settings, make_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.inspect.video_roots = [tmp_path / "nas"]
    async with make_client() as c:
        project = await new_project(c)
        url = f"/projects/{project['id']}/sources"
        r = await post(c, url, "video_file", {"path": str(tmp_path / "nas" / "a.mp4")})
        assert r.status_code == 201, r.text
        r = await post(c, url, "video_file", {"path": str(tmp_path / "other" / "a.mp4")})
        assert_refused(r, str(settings.home / "inspect" / "videos"), str(tmp_path / "nas"))


async def test_filesystem_sinks_stay_under_the_output_root(
    settings, make_client, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    root = settings.home / "inspect" / "output"
    root.mkdir(parents=True)
    (root / "elsewhere").symlink_to(tmp_path)
    async with make_client() as c:
        project = await new_project(c)
        url = f"/projects/{project['id']}/sinks"
        for path in ("/tmp/x", "../../x", "..", str(tmp_path / "x"), "elsewhere/x"):
            r = await post(c, url, "filesystem", {"output_dir": path})
            assert_refused(r, "outside the allowed folders", str(root), "OUTPUT_ROOTS")
        for path in ("line1/alerts", str(root / "line2"), "."):
            r = await post(c, url, "filesystem", {"output_dir": path})
            assert r.status_code == 201, r.text


# --- network -----------------------------------------------------------------------------


async def test_ip_cameras_on_internal_addresses_are_refused(settings, make_client, dns) -> None:  # type: ignore[no-untyped-def]
    settings.egress.allow = []
    dns["metadata.internal"] = ["169.254.169.254"]
    dns["cam.factory"] = ["192.168.1.20"]
    async with make_client() as c:
        project = await new_project(c)
        url = f"/projects/{project['id']}/sources"
        for camera in (
            "rtsp://127.0.0.1:554/stream",
            "rtsp://user:pw@127.0.0.1/stream",
            "http://169.254.169.254/latest/meta-data/",
            "rtsp://metadata.internal/x",
            "rtsp://[::1]:8554/x",
            "rtsp://0.0.0.0/x",
        ):
            r = await post(c, url, "ip_camera", {"url": camera})
            assert_refused(r, "refusing to connect", "VISIONSERVE_EGRESS__ALLOW")
            assert "pw" not in r.json()["detail"]
        # Cameras live on private LANs: allowed by default.
        for camera in ("rtsp://user:pass@192.168.1.100:554/stream", "rtsp://cam.factory/s"):
            r = await post(c, url, "ip_camera", {"url": camera})
            assert r.status_code == 201, r.text

    settings.inspect.allow_private_networks = False
    async with make_client() as c:
        project = await new_project(c, "LAN off")
        url = f"/projects/{project['id']}/sources"
        for camera in ("rtsp://192.168.1.100:554/stream", "rtsp://cam.factory/s"):
            r = await post(c, url, "ip_camera", {"url": camera})
            assert_refused(r, "private network address", "ALLOW_PRIVATE_NETWORKS")
        r = await post(c, url, "ip_camera", {"url": "rtsp://8.8.8.8/stream"})
        assert r.status_code == 201, r.text

    settings.egress.allow = ["192.168.1.0/24"]  # an operator can still open one LAN
    async with make_client() as c:
        project = await new_project(c, "One LAN")
        r = await post(
            c, f"/projects/{project['id']}/sources", "ip_camera", {"url": "rtsp://cam.factory/s"}
        )
        assert r.status_code == 201, r.text


async def test_mqtt_brokers_on_loopback_need_the_allow_list(settings, make_client) -> None:  # type: ignore[no-untyped-def]
    settings.egress.allow = []
    async with make_client() as c:
        project = await new_project(c)
        url = f"/projects/{project['id']}/sinks"
        for broker in ("mqtt://127.0.0.1:6390", "mqtt://localhost:6390", "mqtts://169.254.169.254"):
            r = await post(c, url, "mqtt", {"broker": broker, "topic": "t"})
            assert_refused(r, "refusing to connect", "MQTT broker")
        r = await post(c, url, "mqtt", {"broker": "mqtt://10.0.0.7:1883", "topic": "t"})
        assert r.status_code == 201, r.text

    settings.egress.allow = ["127.0.0.1"]
    async with make_client() as c:
        project = await new_project(c, "Allowed")
        r = await post(
            c,
            f"/projects/{project['id']}/sinks",
            "mqtt",
            {"broker": "mqtt://127.0.0.1:6390", "topic": "t"},
        )
        assert r.status_code == 201, r.text


async def test_webhooks_follow_the_outbox_policy(settings, make_client) -> None:  # type: ignore[no-untyped-def]
    settings.egress.allow = []
    async with make_client() as c:
        project = await new_project(c)
        url = f"/projects/{project['id']}/sinks"
        # The outbox refuses every non-public address, private LANs included: a sink
        # whose every delivery would be refused is refused now.
        for hook in ("http://10.1.2.3/hook", "http://127.0.0.1:8000/x", "http://169.254.169.254/"):
            r = await post(c, url, "webhook", {"url": hook})
            assert_refused(r, "webhook URL", "refusing to connect")
        r = await post(c, url, "webhook", {"url": "http://u:p@8.8.8.8/hook"})
        assert_refused(r, "credentials")
        r = await post(c, url, "webhook", {"url": "https://8.8.8.8/hook"})
        assert r.status_code == 201, r.text

    settings.egress.allow = ["10.1.2.0/24"]
    async with make_client() as c:
        project = await new_project(c, "Allowed")
        r = await post(
            c, f"/projects/{project['id']}/sinks", "webhook", {"url": "http://10.1.2.3/hook"}
        )
        assert r.status_code == 201, r.text


async def test_patch_is_checked_like_create(settings, make_client) -> None:  # type: ignore[no-untyped-def]
    settings.egress.allow = []
    async with make_client() as c:
        project = await new_project(c)
        source = (
            await post(c, f"/projects/{project['id']}/sources", "video_file", {"path": "a.mp4"})
        ).json()
        sink = (
            await post(c, f"/projects/{project['id']}/sinks", "filesystem", {"output_dir": "out"})
        ).json()

        r = await c.patch(f"/sources/{source['id']}", json={"config": {"path": "/etc/passwd"}})
        assert_refused(r, "outside the allowed folders")
        r = await c.patch(
            f"/sources/{source['id']}",
            json={"type": "ip_camera", "config": {"url": "rtsp://169.254.169.254/x"}},
        )
        assert_refused(r, "link-local")
        r = await c.patch(f"/sources/{source['id']}", json={"type": "ip_camera"})
        assert_refused(r, "needs a config")
        r = await c.patch(f"/sinks/{sink['id']}", json={"config": {"output_dir": "../../x"}})
        assert_refused(r, "outside the allowed folders")
        r = await c.patch(
            f"/sinks/{sink['id']}",
            json={"type": "mqtt", "config": {"broker": "mqtt://127.0.0.1:6390", "topic": "t"}},
        )
        assert_refused(r, "loopback")
        r = await c.patch(f"/sinks/{sink['id']}", json={"config": {"output_dir": 5}})
        assert r.status_code == 422

        # Refused changes left them as they were; allowed ones land.
        assert (await c.get(f"/projects/{project['id']}/sources")).json() == [source]
        r = await c.patch(
            f"/sources/{source['id']}",
            json={"name": "renamed", "config": {"path": "b.mp4", "loop": True}},
        )
        assert r.status_code == 200, r.text
        assert (r.json()["name"], r.json()["config"]) == (
            "renamed",
            {"path": "b.mp4", "loop": True},
        )
        r = await c.patch(f"/sinks/{sink['id']}", json={"config": {"output_dir": "line2"}})
        assert r.status_code == 200 and r.json()["config"]["output_dir"] == "line2"
        assert (await c.patch("/sinks/nope", json={"name": "x"})).status_code == 404


# --- checked again at start --------------------------------------------------------------


async def test_start_checks_again(settings, make_client, dns) -> None:  # type: ignore[no-untyped-def]
    """DNS answers and symlinks change after creation: POST /active-pipelines looks again."""
    settings.egress.allow = []
    dns["cam.factory"] = ["192.168.1.20"]
    root = settings.home / "inspect" / "videos"
    root.mkdir(parents=True)
    (root / "line.mp4").write_bytes(b"x")
    async with make_client() as c:
        project = await new_project(c)
        pid = project["id"]
        model_id = ready_model(settings, pid)
        camera = (
            await post(c, f"/projects/{pid}/sources", "ip_camera", {"url": "rtsp://cam.factory/s"})
        ).json()
        video = (
            await post(c, f"/projects/{pid}/sources", "video_file", {"path": "line.mp4"})
        ).json()
        pipelines = []
        for source in (camera, video):
            body = {"name": source["type"], "model_id": model_id, "source_id": source["id"]}
            r = await c.post(f"/projects/{pid}/pipelines", json=body)
            assert r.status_code == 201, r.text
            pipelines.append(r.json()["id"])

        dns["cam.factory"] = ["169.254.169.254"]
        (root / "line.mp4").unlink()
        (root / "line.mp4").symlink_to("/etc/passwd")
        for pipeline_id, needle in zip(
            pipelines, ("link-local", "outside the allowed folders"), strict=True
        ):
            r = await c.post("/active-pipelines", json={"pipeline_id": pipeline_id})
            assert_refused(r, needle)
        with session_scope(settings.database_url) as s:
            assert s.query(InspectActivePipeline).count() == 0  # refused before any run

        # Back as they were: the checks pass (and only the missing Ray cluster stops it).
        dns["cam.factory"] = ["192.168.1.20"]
        r = await c.post("/active-pipelines", json={"pipeline_id": pipelines[0]})
        assert r.status_code == 503, r.text


# --- write-only secrets ------------------------------------------------------------------


def stored(settings, record: Any, row_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    with session_scope(settings.database_url) as s:
        return dict(s.get(record, row_id).config)


async def test_secrets_are_masked_and_kept(settings, make_client) -> None:  # type: ignore[no-untyped-def]
    async with make_client() as c:
        project = await new_project(c)
        sinks, sources = f"/projects/{project['id']}/sinks", f"/projects/{project['id']}/sources"
        mqtt_config = {
            "broker": "mqtt://bob:urlpass@10.0.0.7:1883",
            "topic": "anomaly/alerts",
            "username": "user",
            "password": "hunter2",
        }
        hook_config = {
            "url": "https://8.8.8.8/hook",
            "headers": {"Authorization": "Bearer t0ken", "X-Line": "2"},
            "secret": "whsec_0123456789abcdef",
        }
        mqtt_sink = (
            await c.post(sinks, json={"type": "mqtt", "name": "m", "config": mqtt_config})
        ).json()
        hook = (
            await c.post(sinks, json={"type": "webhook", "name": "w", "config": hook_config})
        ).json()
        camera_url = "rtsp://admin:camsecret@192.168.1.100:554/stream"
        camera = (
            await c.post(
                sources, json={"type": "ip_camera", "name": "c", "config": {"url": camera_url}}
            )
        ).json()

        listed = {s["name"]: s["config"] for s in (await c.get(sinks)).json()}
        assert listed["m"] == {
            **mqtt_config,
            "broker": f"mqtt://bob:{MASK}@10.0.0.7:1883",
            "password": MASK,
        }
        assert listed["w"] == {
            "url": "https://8.8.8.8/hook",
            "method": "POST",
            "headers": {"Authorization": MASK, "X-Line": MASK},
            "secret": MASK,
        }
        [shown] = (await c.get(sources)).json()
        assert shown["config"]["url"] == f"rtsp://admin:{MASK}@192.168.1.100:554/stream"
        body = str((await c.get(sinks)).json()) + str((await c.get(sources)).json())
        for secret in ("urlpass", "hunter2", "t0ken", "whsec_0123456789abcdef", "camsecret"):
            assert secret not in body

        # Sent back as shown, with one change: the secrets are kept, and not echoed.
        r = await c.patch(
            f"/sinks/{mqtt_sink['id']}", json={"config": {**listed["m"], "topic": "line2"}}
        )
        assert r.status_code == 200, r.text
        assert r.json()["config"]["password"] == MASK
        assert stored(settings, InspectSink, mqtt_sink["id"]) == {**mqtt_config, "topic": "line2"}
        r = await c.patch(
            f"/sinks/{hook['id']}",
            json={"config": {**listed["w"], "headers": {"Authorization": MASK, "X-Line": "3"}}},
        )
        assert r.status_code == 200, r.text
        assert stored(settings, InspectSink, hook["id"]) == {
            **hook_config,
            "method": "POST",
            "headers": {"Authorization": "Bearer t0ken", "X-Line": "3"},
        }
        # A webhook config without its secret keeps the signing secret too.
        r = await c.patch(f"/sinks/{hook['id']}", json={"config": {"url": "https://8.8.4.4/h"}})
        assert r.status_code == 200 and r.json()["config"]["secret"] == MASK
        assert stored(settings, InspectSink, hook["id"])["secret"] == hook_config["secret"]
        r = await c.patch(f"/sources/{camera['id']}", json={"config": shown["config"]})
        assert r.status_code == 200, r.text
        assert stored(settings, InspectSource, camera["id"])["url"] == camera_url

        # A masked password or header only follows an unchanged destination: nobody can
        # point a sink at their own host and receive the stored credentials.
        moved = {**listed["m"], "broker": f"mqtt://bob:{MASK}@10.9.9.9:1883"}
        r = await c.patch(f"/sinks/{mqtt_sink['id']}", json={"config": moved})
        assert_refused(r, "mask")
        moved = {**listed["m"], "broker": "mqtt://10.9.9.9:1883"}  # the password field
        r = await c.patch(f"/sinks/{mqtt_sink['id']}", json={"config": moved})
        assert_refused(r, "password")
        r = await c.patch(
            f"/sinks/{hook['id']}",
            json={"config": {"url": "https://1.1.1.1/x", "headers": {"Authorization": MASK}}},
        )
        assert_refused(r, "header Authorization")
        other = {"url": f"rtsp://admin:{MASK}@192.168.1.101/stream"}
        assert_refused(await c.patch(f"/sources/{camera['id']}", json={"config": other}), "mask")
        assert stored(settings, InspectSink, mqtt_sink["id"])["broker"] == mqtt_config["broker"]

        # A mask where nothing was stored is refused, not saved as the password.
        r = await c.post(
            sinks,
            json={
                "type": "mqtt",
                "name": "n",
                "config": {"broker": "mqtt://10.0.0.8", "topic": "t"},
            },
        )
        r = await c.patch(
            f"/sinks/{r.json()['id']}",
            json={"config": {"broker": "mqtt://10.0.0.8", "topic": "t", "password": MASK}},
        )
        assert_refused(r, "password")


async def test_a_generated_webhook_secret_is_shown_once(settings, make_client) -> None:  # type: ignore[no-untyped-def]
    async with make_client() as c:
        project = await new_project(c)
        sinks = f"/projects/{project['id']}/sinks"
        disk = (await post(c, sinks, "filesystem", {"output_dir": "out"})).json()
        r = await c.patch(
            f"/sinks/{disk['id']}", json={"type": "webhook", "config": {"url": "https://8.8.8.8/h"}}
        )
        assert r.status_code == 200, r.text
        secret = r.json()["config"]["secret"]
        assert (
            secret.startswith("whsec_")
            and secret == stored(settings, InspectSink, disk["id"])["secret"]
        )
        assert (await c.get(sinks)).json()[0]["config"]["secret"] == MASK


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("sources", {"type": "ip_camera", "name": "cam", "config": {"url": "rtsp://]x"}}),
        ("sources", {"type": "ip_camera", "name": "cam", "config": {"url": "rtsp://h:99999/"}}),
        ("sinks", {"type": "webhook", "name": "hook", "config": {"url": "http://[::1"}}),
        ("sinks", {"type": "mqtt", "name": "m", "config": {"broker": "mqtt://:1", "topic": "t"}}),
    ],
)
async def test_urls_that_do_not_parse_are_422_not_500(make_client, kind, config) -> None:  # type: ignore[no-untyped-def]
    """Found by the API fuzzer: urlsplit raised ValueError, which became a 500."""
    client = make_client()
    project = await new_project(client)
    r = await client.post(f"/projects/{project['id']}/{kind}", json=config)
    assert r.status_code == 422, r.text
    assert "URL" in json.dumps(r.json()["detail"])
