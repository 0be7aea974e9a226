"""cutout over HTTP (ASGI, no Ray): real u2netp/u2net and upscalers behind in-process handles."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from deployments.bg_removal import BackgroundRemoval
from deployments.upscale import Upscale
from graphs.cutout import CutoutGraph
from tests.fakes import LocalHandle, instance
from tests.scenes import iou, object_scene
from visionserve.api.app import create_app
from visionserve.platform import webhooks
from visionserve.platform.context import AppContext, build_context
from visionserve.platform.worker import Worker
from visionserve.settings import Settings, get_settings
from visionserve.surfaces import load_surface
from visionserve.surfaces.cutout.service import CATALOGUE, CutoutCatalogue

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def models() -> dict[str, object]:
    """Loaded once per module: the real deployment classes, outside Serve."""
    snapshot = Settings(model_home=get_settings().model_home).model_dump(mode="json")
    return {
        "local_u2netp": instance(BackgroundRemoval, "u2netp", snapshot),
        "local_u2net": instance(BackgroundRemoval, "u2net", snapshot),
        "upscale": instance(Upscale, snapshot),
    }


class Broken:
    """A model that always fails, to prove one failure does not sink the others."""

    async def remove(self, image: object, output_format: object = None) -> None:
        from visionserve.errors import Unprocessable

        raise Unprocessable("model exploded", code="bg_removal_failed")


def cutout_context(
    settings: Settings,
    removers: dict[str, object],
    names: dict[str, str],
    upscale: object,
    record: list[str] | None = None,
) -> AppContext:
    """As the app builder wires it: handles, and the catalogue it already knows."""
    handles = {m: LocalHandle(r, record, m) for m, r in removers.items()}
    upscaler = LocalHandle(upscale, record, "upscale")
    graph = instance(CutoutGraph, handles, names, upscaler, 30.0)
    catalogue = CutoutCatalogue(
        models=names,
        upscale_methods=sorted(upscale.upscalers),  # type: ignore[attr-defined]
    )
    return build_context(
        settings,
        handles={"cutout-graph": LocalHandle(graph, record, "cutout-graph"), "upscale": upscaler},
        runtime={CATALOGUE: catalogue},
    )


def context_for(settings: Settings, models: dict[str, object], ids: list[str]) -> AppContext:
    removers = {i: models[i] if i in models else Broken() for i in ids}
    names = {i: i.replace("_", " ").title() for i in ids}
    return cutout_context(settings, removers, names, models["upscale"])


@pytest.fixture
def make_client(settings, models):  # type: ignore[no-untyped-def]
    settings.model_home = get_settings().model_home

    def make(ids: list[str] | None = None) -> tuple[httpx.AsyncClient, object]:
        ctx = context_for(settings, models, ids or ["local_u2netp", "local_u2net"])
        app = create_app(ctx, [load_surface("cutout")])
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000", timeout=120
        )
        return client, ctx

    return make


def b64(img: Image.Image, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return base64.b64encode(buf.getvalue()).decode()


def decode(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data)))


async def test_shotgun_runs_every_model_and_cuts_the_object_out(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    scene, truth = object_scene(shape="bottle", colour=(40, 160, 60))
    r = await client.post("/cutout/remove-background", json={"image": b64(scene)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "completed" and body["total_cost_usd"] == 0.0
    assert {x["model_id"] for x in body["results"]} == {"local_u2netp", "local_u2net"}
    assert r.headers["X-RateLimit-Limit"] == "60"
    for result in body["results"]:
        assert result["status"] == "success" and result["processing_time_ms"] > 0
        out = decode(result["image_base64"])
        assert out.mode == "RGBA" and out.size == scene.size
        assert iou(np.asarray(out.getchannel("A")) > 127, truth) >= 0.9, result["model_id"]
        fetched = await client.get(result["image_url"])  # signed URL of the ingress
        assert fetched.status_code == 200
        assert fetched.content == base64.b64decode(result["image_base64"])


async def test_webp_output_and_explicit_model(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    scene, truth = object_scene()
    r = await client.post(
        "/cutout/remove-background",
        json={"image": b64(scene), "include_models": ["local_u2netp"], "output_format": "webp"},
    )
    (result,) = r.json()["results"]
    out = decode(result["image_base64"])
    assert out.format == "WEBP" and out.mode == "RGBA"
    assert iou(np.asarray(out.getchannel("A")) > 127, truth) >= 0.9


async def test_one_failing_model_gives_partial_all_failing_422(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client(["local_u2netp", "broken"])
    scene, _ = object_scene()
    r = await client.post("/cutout/remove-background", json={"image": b64(scene)})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "partial"
    bad = next(x for x in body["results"] if x["model_id"] == "broken")
    assert bad["status"] == "error" and bad["error"] == "model exploded"
    assert bad.get("image_base64") is None
    client, _ = make_client(["broken"])
    r = await client.post("/cutout/remove-background", json={"image": b64(scene)})
    assert r.status_code == 422 and r.json()["error"]["type"] == "processing_error"


@pytest.mark.parametrize("scale", [2, 4])
async def test_upscale_keeps_alpha_and_exact_dimensions(make_client, scale) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    img = Image.new("RGBA", (51, 37), (0, 255, 0, 0))
    img.paste(Image.new("RGBA", (20, 20), (200, 20, 20, 255)), (10, 8))
    r = await client.post("/cutout/upscale", json={"image": b64(img), "scale_factor": scale})
    body = r.json()
    assert r.status_code == 200, r.text
    assert body["input_dimensions"] == {"width": 51, "height": 37}
    assert body["output_dimensions"] == {"width": 51 * scale, "height": 37 * scale}
    assert body["alpha_preserved"] is True
    out = np.asarray(decode(body["image_base64"]))
    assert out.shape == (37 * scale, 51 * scale, 4)
    assert out[..., 3].min() == 0 and out[..., 3].max() == 255
    visible = out[..., 3] > 32  # tiny alphas magnify rounding when un-premultiplied
    assert out[visible][:, 1].max() <= 60  # no green fringe from the transparent area


async def test_waifu2x_method_and_unknown_method(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    scene, _ = object_scene(size=(96, 64))
    r = await client.post(
        "/cutout/upscale",
        json={"image": b64(scene), "scale_factor": 2, "method": "waifu2x-upconv7"},
    )
    assert r.status_code == 200 and r.json()["output_dimensions"] == {"width": 192, "height": 128}
    r = await client.post("/cutout/upscale", json={"image": b64(scene), "method": "bicubic"})
    err = r.json()["error"]
    assert r.status_code == 400 and err["type"] == "validation_error"
    assert "lanczos" in err["message"] and err["details"]["field"] == "method"


async def test_process_pipeline_cuts_then_upscales(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    scene, truth = object_scene(size=(256, 192))
    r = await client.post(
        "/cutout/process", json={"image": b64(scene), "upscale_factor": 2, "bg_models": ["all"]}
    )
    body = r.json()
    assert r.status_code == 200 and body["status"] == "completed", r.text
    for result in body["results"]:
        assert result["bg_removal_status"] == "success" and result["upscale_status"] == "success"
        assert result["output_dimensions"] == {"width": 512, "height": 384}
        out = decode(result["image_base64"])
        small = out.getchannel("A").resize(scene.size, Image.Resampling.BILINEAR)
        assert iou(np.asarray(small) > 127, truth) >= 0.9


async def test_selection_preferences_and_best(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    scene, _ = object_scene(size=(128, 96))
    runs = []
    for _ in range(3):
        r = await client.post(
            "/cutout/remove-background", json={"image": b64(scene), "return_base64": False}
        )
        assert r.json()["results"][0].get("image_base64") is None
        runs.append(r.json()["job_id"])
    for job_id, pick in zip(runs, ["local_u2net", "local_u2net", "local_u2netp"], strict=True):
        r = await client.post(
            "/cutout/log-selection",
            json={"job_id": job_id, "selected_model_id": pick, "image_category": "product"},
        )
        assert r.status_code == 200 and r.json()["status"] == "logged"
        assert r.json()["selection_id"]
    prefs = (await client.get("/cutout/preferences")).json()
    assert prefs["total_selections"] == 3
    rates = {p["model_id"]: p["win_rate"] for p in prefs["by_category"]["product"]}
    assert rates == {
        "local_u2net": pytest.approx(2 / 3, abs=1e-3),
        "local_u2netp": pytest.approx(1 / 3, abs=1e-3),
    }
    r = await client.post(
        "/cutout/remove-background",
        json={"image": b64(scene), "include_models": ["best"], "image_category": "product"},
    )
    assert [x["model_id"] for x in r.json()["results"]] == ["local_u2net"]

    r = await client.post(
        "/cutout/log-selection", json={"job_id": "nope", "selected_model_id": "local_u2net"}
    )
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    r = await client.post(
        "/cutout/log-selection", json={"job_id": runs[0], "selected_model_id": "runware_rmbg2"}
    )
    assert r.status_code == 400 and r.json()["error"]["details"]["valid"] == [
        "local_u2net",
        "local_u2netp",
    ]


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def _gif() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "GIF")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize(
    ("body", "status", "kind", "check"),
    [
        ({}, 400, "missing_image", None),
        ({"image": _gif()}, 400, "invalid_format", ("received", "image/gif")),
        (
            {"image": base64.b64encode(b"<svg xmlns='http://www.w3.org/2000/svg'/>").decode()},
            400,
            "invalid_format",
            None,
        ),
        ({"image": base64.b64encode(b"just some text").decode()}, 400, "invalid_format", None),
        ({"image": "!!!not base64!!!"}, 400, "validation_error", ("code", "invalid_base64")),
        ({"image": ""}, 400, "missing_image", None),
        (
            {"image": base64.b64encode(_png_header_only(50000, 50000)).decode()},
            400,
            "validation_error",
            ("code", "invalid_image"),
        ),
        (
            {"image_url": "http://10.0.0.1/a.png"},
            400,
            "validation_error",
            ("code", "url_not_allowed"),
        ),
        (
            {"image_url": "http://169.254.169.254/latest/meta-data"},
            400,
            "validation_error",
            ("code", "url_not_allowed"),
        ),
        (
            {"image_url": "http://127.0.0.1:9/closed.png"},
            400,
            "validation_error",
            ("code", "url_unreachable"),
        ),
        ({"image_url": "file:///etc/passwd"}, 400, "validation_error", None),
        ({"image": "aGk=", "output_format": "gif"}, 400, "validation_error", None),
        ({"image": "aGk=", "include_models": ["nope"]}, 400, "invalid_format", None),
    ],
)
async def test_bad_input_gets_contract_errors(make_client, body, status, kind, check) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    r = await client.post("/cutout/remove-background", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == kind and err["message"]
    if check:
        assert err["details"][check[0]] == check[1]


async def test_truncated_and_zero_size_images(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    scene, _ = object_scene(size=(64, 64))
    raw = base64.b64decode(b64(scene))
    r = await client.post(
        "/cutout/upscale", json={"image": base64.b64encode(raw[: len(raw) // 2]).decode()}
    )
    assert r.status_code == 400 and "truncated" in r.json()["error"]["message"]
    r = await client.post("/cutout/upscale", json={"image": b64(Image.new("RGB", (1, 1)))[:0]})
    assert r.status_code == 400
    r = await client.post("/cutout/upscale", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["type"] == "validation_error"


async def test_too_large_image_is_413(settings, make_client) -> None:  # type: ignore[no-untyped-def]
    settings.limits.max_download_bytes = 100_000
    client, _ = make_client()
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), np.uint8))
    r = await client.post("/cutout/remove-background", json={"image": b64(noise)})
    assert r.status_code == 413 and r.json()["error"]["type"] == "image_too_large"


async def test_async_mode_queues_then_calls_back_signed(make_client, receiver, settings) -> None:  # type: ignore[no-untyped-def]
    client, ctx = make_client()
    scene, truth = object_scene(size=(160, 120))
    r = await client.post(
        "/cutout/remove-background",
        json={"image": b64(scene), "webhook_url": receiver.url, "webhook_secret": "shh"},
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert r.json()["status_url"] == f"/cutout/jobs/{job_id}"
    assert (await client.get(f"/cutout/jobs/{job_id}")).json()["status"] == "queued"

    worker = Worker(ctx)
    deliverer = webhooks.Deliverer(
        settings.database_url, settings.webhooks, ctx.egress, worker_id="t"
    )
    loops = [asyncio.create_task(worker.run()), asyncio.create_task(deliverer.run())]
    try:
        for _ in range(300):
            status = (await client.get(f"/cutout/jobs/{job_id}")).json()
            if status["status"] == "completed" and receiver.requests:
                break
            await asyncio.sleep(0.1)
    finally:
        await worker.stop()
        deliverer.stop()
        await asyncio.gather(*loops)
    assert status["status"] == "completed", status
    (hook,) = receiver.requests
    payload = json.loads(hook.body)
    assert payload["event"] == "job_completed" and payload["job_id"] == job_id
    assert webhooks.verify("shh", hook.headers["X-VisionServe-Signature"], hook.body)
    unsigned = {k: v for k, v in payload.items() if k != "signature"}
    import hashlib
    import hmac as hmac_

    expected = hmac_.new(
        b"shh", json.dumps(unsigned, separators=(",", ":"), sort_keys=True).encode(), hashlib.sha256
    ).hexdigest()
    assert payload["signature"] == expected
    result = payload["results"][0]
    fetched = await client.get(result["image_url"])
    out = Image.open(io.BytesIO(fetched.content))
    assert iou(np.asarray(out.getchannel("A")) > 127, truth) >= 0.9
    # The selection can be logged against an async job too.
    r = await client.post(
        "/cutout/log-selection", json={"job_id": job_id, "selected_model_id": result["model_id"]}
    )
    assert r.status_code == 200


async def test_async_private_callback_refused(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    scene, _ = object_scene(size=(64, 64))
    r = await client.post(
        "/cutout/remove-background",
        json={"image": b64(scene), "webhook_url": "http://169.254.169.254/hook"},
    )
    assert r.status_code == 400 and r.json()["error"]["details"]["code"] == "url_not_allowed"


class Gate:
    """A model that waits until released: holds requests in flight."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def remove(self, image: object, output_format: object = None) -> object:
        from visionserve.models.cutout import Cutout

        self.entered += 1
        await self.release.wait()
        return Cutout(encoded=b"\x89PNG", width=1, height=1)


async def test_four_concurrent_jobs_per_client(settings, models) -> None:  # type: ignore[no-untyped-def]
    gate = Gate()
    settings.model_home = get_settings().model_home
    ctx = cutout_context(settings, {"local_gate": gate}, {"local_gate": "Gate"}, models["upscale"])
    app = create_app(ctx, [load_surface("cutout")])
    scene, _ = object_scene(size=(32, 32))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=30
    ) as client:
        held = [
            asyncio.create_task(
                client.post("/cutout/remove-background", json={"image": b64(scene)})
            )
            for _ in range(4)
        ]
        while gate.entered < 4:
            await asyncio.sleep(0.01)
        fifth = await client.post("/cutout/remove-background", json={"image": b64(scene)})
        assert fifth.status_code == 429
        assert fifth.json()["error"]["type"] == "rate_limit_exceeded"
        assert "concurrent" in fifth.json()["error"]["message"]
        gate.release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200] * 4
        again = await client.post("/cutout/remove-background", json={"image": b64(scene)})
        assert again.status_code == 200


async def test_a_request_makes_only_its_model_calls(settings, models) -> None:  # type: ignore[no-untyped-def]
    """The catalogue comes from the builder: no remote call asks for models or methods."""
    calls: list[str] = []
    settings.model_home = get_settings().model_home
    ctx = cutout_context(
        settings,
        {"local_u2netp": models["local_u2netp"]},
        {"local_u2netp": "U2netp"},
        models["upscale"],
        calls,
    )
    app = create_app(ctx, [load_surface("cutout")])
    scene, _ = object_scene(size=(64, 48))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=60
    ) as client:
        r = await client.post("/cutout/remove-background", json={"image": b64(scene)})
        assert r.status_code == 200, r.text
        assert calls == ["cutout-graph.shotgun", "local_u2netp.remove"]
        calls.clear()
        r = await client.post("/cutout/upscale", json={"image": b64(scene), "scale_factor": 2})
        assert r.status_code == 200, r.text
        assert calls == ["upscale.upscale"]
        calls.clear()
        r = await client.post("/cutout/process", json={"image": b64(scene), "upscale_factor": 2})
        assert r.status_code == 200, r.text
        assert calls == ["cutout-graph.process", "local_u2netp.remove", "upscale.upscale"]
        calls.clear()
        r = await client.post("/cutout/upscale", json={"image": b64(scene), "method": "bicubic"})
        assert r.status_code == 400 and r.json()["error"]["details"]["valid"] == sorted(
            models["upscale"].upscalers  # type: ignore[attr-defined]
        )
        models_listed = (await client.get("/cutout/models")).json()["models"]
        assert models_listed == [{"model_id": "local_u2netp", "model_name": "U2netp"}]
        assert calls == []


class Crashing:
    """A model whose failure carries internals a client must never see."""

    async def remove(self, image: object, output_format: object = None) -> None:
        raise RuntimeError("/secret/server/path kaput")

    upscalers = {"lanczos": None}

    async def upscale(self, *args: object) -> None:
        raise RuntimeError("/secret/server/path kaput")


def _no_internals(text: str) -> None:
    for leaked in ("/secret", "kaput", "RuntimeError"):
        assert leaked not in text, text


async def test_model_failures_show_only_their_public_face(  # type: ignore[no-untyped-def]
    settings, models, library_log, monkeypatch
) -> None:
    settings.model_home = get_settings().model_home
    ctx = cutout_context(
        settings,
        {"local_u2netp": models["local_u2netp"], "crashing": Crashing()},
        {"local_u2netp": "U2netp", "crashing": "Crashing"},
        models["upscale"],
    )
    app = create_app(ctx, [load_surface("cutout")])
    scene, _ = object_scene(size=(64, 48))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=60
    ) as client:
        # One model crashes beside a good one: its result says so, publicly.
        r = await client.post("/cutout/remove-background", json={"image": b64(scene)})
        assert r.status_code == 200 and r.json()["status"] == "partial"
        bad = next(x for x in r.json()["results"] if x["model_id"] == "crashing")
        assert bad["status"] == "error" and bad["error"].startswith("Internal error")
        _no_internals(r.text)

        # A real model deployment whose model crashes: wrapped there, public here.
        def boom(images: object) -> None:
            raise RuntimeError("/secret/server/path kaput")

        monkeypatch.setattr(models["local_u2netp"].remover, "remove_batch", boom)  # type: ignore[attr-defined]
        r = await client.post("/cutout/remove-background", json={"image": b64(scene)})
        assert r.status_code == 422 and r.json()["error"]["message"] == "All models failed"
        _no_internals(r.text)

    # An upscaler that crashes outside any wrapper: a 500 naming the request id.
    ctx = cutout_context(settings, {}, {}, Crashing())
    app = create_app(ctx, [load_surface("cutout")])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=60
    ) as client:
        r = await client.post("/cutout/upscale", json={"image": b64(scene)})
    assert r.status_code == 500 and r.json()["error"]["type"] == "internal_error"
    _no_internals(r.text)
    assert f"request {r.headers['X-Request-ID']}" in r.json()["error"]["message"]
    # The log has every one of them in full.
    crashes = [r for r in library_log.records if r.exc_info and "kaput" in str(r.exc_info[1])]
    assert len(crashes) == 4, [r.getMessage() for r in crashes]


# --- output size limit -------------------------------------------------------------


def flat_rgba_png(size: tuple[int, int]) -> str:
    """A flat RGBA PNG: 7999x7999 compresses to about 250 KB, well under the input caps."""
    buf = io.BytesIO()
    Image.new("RGBA", size, (40, 90, 160, 255)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def record_client(settings, models, calls: list[str]) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    settings.model_home = get_settings().model_home
    ctx = cutout_context(
        settings,
        {"local_u2netp": models["local_u2netp"]},
        {"local_u2netp": "U2netp"},
        models["upscale"],
        calls,
    )
    app = create_app(ctx, [load_surface("cutout")])
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=60
    )


async def test_upscale_over_the_output_limit_is_refused_before_any_work(settings, models) -> None:  # type: ignore[no-untyped-def]
    """The issue's request: 7999x7999 RGBA (under the 64 MP input cap) at x4 is a 1 GP output."""
    calls: list[str] = []
    image = flat_rgba_png((7999, 7999))
    async with record_client(settings, models, calls) as client:
        r = await client.post("/cutout/upscale", json={"image": image, "scale_factor": 4})
    err = r.json()["error"]
    assert r.status_code == 413 and err["type"] == "image_too_large", r.text
    limit = settings.limits.max_output_pixels
    assert err["details"]["max_output_pixels"] == limit == 32_000_000
    assert err["details"]["output_pixels"] == 7999 * 7999 * 16
    assert err["details"]["max_input_pixels_at_scale"] == limit // 16
    assert str(limit) in err["message"]
    assert calls == []  # no model was called


@pytest.mark.parametrize("kind", ["upscale", "process"])
async def test_output_limit_is_inclusive_and_per_scale(settings, models, kind) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    scene, _ = object_scene(size=(64, 48))
    settings.limits.max_output_pixels = 64 * 48 * 4  # x2 exactly fits, x4 does not
    field = "scale_factor" if kind == "upscale" else "upscale_factor"
    async with record_client(settings, models, calls) as client:
        ok = await client.post(f"/cutout/{kind}", json={"image": b64(scene), field: 2})
        assert ok.status_code == 200, ok.text
        calls.clear()
        r = await client.post(f"/cutout/{kind}", json={"image": b64(scene), field: 4})
    err = r.json()["error"]
    assert r.status_code == 413 and err["type"] == "image_too_large", r.text
    assert err["details"]["max_output_pixels"] == 64 * 48 * 4
    assert (err["details"]["output_width"], err["details"]["output_height"]) == (256, 192)
    # /process refuses before background removal runs: its cut-outs could not be upscaled.
    assert calls == []


async def test_background_removal_alone_has_no_output_limit(settings, models) -> None:  # type: ignore[no-untyped-def]
    scene, _ = object_scene(size=(64, 48))
    settings.limits.max_output_pixels = 100  # smaller than the image: it never grows
    async with record_client(settings, models, []) as client:
        r = await client.post("/cutout/remove-background", json={"image": b64(scene)})
    assert r.status_code == 200, r.text


async def test_async_request_over_the_limit_is_not_queued(settings, models, receiver) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from visionserve.store.db import session_scope
    from visionserve.store.records import Job

    scene, _ = object_scene(size=(64, 48))
    settings.limits.max_output_pixels = 64 * 48 * 4
    async with record_client(settings, models, []) as client:
        r = await client.post(
            "/cutout/upscale",
            json={"image": b64(scene), "scale_factor": 4, "webhook_url": receiver.url},
        )
    assert r.status_code == 413 and r.json()["error"]["type"] == "image_too_large", r.text
    with session_scope(settings.database_url) as db:
        assert db.scalar(select(func.count()).select_from(Job)) == 0


async def test_upscale_deployment_checks_the_output_size_itself(models, database_url) -> None:  # type: ignore[no-untyped-def]
    """Not every caller is the ingress: the replica refuses before allocating anything."""
    from visionserve.errors import PayloadTooLarge

    upscale = models["upscale"]
    huge = np.broadcast_to(np.zeros(4, np.uint8), (7999, 7999, 4))  # no memory behind it
    with pytest.raises(PayloadTooLarge) as info:
        await upscale.upscale(huge, 4, "lanczos", "png")  # type: ignore[attr-defined]
    assert info.value.details["max_output_pixels"] == upscale.max_output_pixels  # type: ignore[attr-defined]
    assert upscale.budget.in_flight == 0  # type: ignore[attr-defined]
