"""Remote providers against local fakes of the Runware and Kie.ai protocols on 127.0.0.1.

Each fake is a Starlette app served by uvicorn on a free loopback port. It checks
the documented request shape (Bearer auth, task fields, model id), cuts out a real
PNG with Pillow, and scripts the failures a provider can throw at us.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from visionserve.errors import EgressRefused, ServiceUnavailable, Unprocessable
from visionserve.models.providers import (
    KieRecraftRemover,
    RemoteBackgroundRemover,
    RunwareRemover,
    build_providers,
)
from visionserve.platform.egress import EgressPolicy
from visionserve.settings import EgressSettings, Settings

RUNWARE_KEY = "rw-test-key-4f1c9a"
KIE_KEY = "kie-test-key-77d2e0"
RUNWARE_MODELS = {"bria:2@1", "runware:112@10"}
PRIVATE_URL = "http://10.0.0.1/result.png"
SIZE = 256  # Recraft via Kie.ai refuses images under 256 px on a side.


# -- images ----------------------------------------------------------------------


def scene_png(size: int = SIZE) -> bytes:
    """An opaque scene: a dark disc (the subject) on a light background."""
    image = Image.new("RGB", (size, size), (230, 230, 220))
    ImageDraw.Draw(image).ellipse(
        (size // 4, size // 4, 3 * size // 4, 3 * size // 4), (20, 40, 90)
    )
    return _png(image)


def cut_out(png: bytes) -> bytes:
    """What a background remover answers: the dark pixels kept, the rest transparent."""
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    alpha = image.convert("L").point(lambda v: 255 if v < 128 else 0)
    image.putalpha(alpha)
    return _png(image)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def assert_cutout(result: bytes) -> None:
    image = Image.open(io.BytesIO(result))
    assert image.format == "PNG" and image.mode == "RGBA"
    assert image.size == (SIZE, SIZE)
    alpha = image.getchannel("A")
    assert alpha.getpixel((2, 2)) == 0, "background must be transparent"
    assert alpha.getpixel((SIZE // 2, SIZE // 2)) == 255, "subject must stay opaque"


def decode_data_uri(value: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert value.startswith(prefix), value[:40]
    return base64.b64decode(value[len(prefix) :], validate=True)


# -- a uvicorn server in a thread --------------------------------------------------


@dataclass
class Fake:
    """A fake provider: its base URL, what it received and how it should answer."""

    url: str = ""
    mode: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def reset(self) -> None:
        self.mode = "ok"
        self.requests.clear()
        self.files.clear()
        self.tasks.clear()

    def file_url(self, data: bytes) -> str:
        name = f"{uuid.uuid4().hex}.png"
        self.files[name] = data
        return f"{self.url}/files/{name}"

    async def serve_file(self, request: Request) -> Response:
        data = self.files.get(request.path_params["name"])
        if data is None:
            return PlainTextResponse("not found", status_code=404)
        return Response(data, media_type="image/png")


@pytest.fixture(scope="module")
def serve() -> Iterator[Any]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: Starlette) -> str:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        assert server.started, "fake provider did not start"
        servers.append((server, thread))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every URL httpx sends, from the tests or the fakes; anything off loopback fails."""
    sent: list[str] = []
    original = httpx.AsyncHTTPTransport.handle_async_request

    async def spy(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        assert request.url.host == "127.0.0.1", f"tried to reach {request.url}"
        return await original(self, request)

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", spy)
    return sent


@pytest.fixture
def egress() -> EgressPolicy:
    return EgressPolicy(EgressSettings(allow=["127.0.0.1"]))


# -- the Runware fake ---------------------------------------------------------------


def runware_app(fake: Fake) -> Starlette:
    def errors(status: int, code: str, message: str, parameter: str = "") -> JSONResponse:
        error = {"code": code, "message": message, "parameter": parameter}
        return JSONResponse({"errors": [{**error, "taskType": "removeBackground"}]}, status)

    async def tasks(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        body = await request.json()
        fake.requests.append({"auth": auth, "body": body})
        if auth != f"Bearer {RUNWARE_KEY}":
            # Some APIs echo the credential back; ours must never pass it on.
            return errors(401, "invalidApiKey", f"Invalid API key {auth.removeprefix('Bearer ')}")
        if fake.mode == "error500":
            return PlainTextResponse("upstream exploded", status_code=500)
        if fake.mode == "slow":
            await asyncio.sleep(2)
        if fake.mode == "rejected":
            return errors(400, "invalidInputImage", "Invalid value for 'inputImage'", "inputImage")
        # The documented shape: an array of task objects.
        assert isinstance(body, list) and len(body) == 1, body
        task = body[0]
        assert task["taskType"] == "removeBackground"
        assert uuid.UUID(task["taskUUID"]).version == 4
        assert task["model"] in RUNWARE_MODELS, task["model"]
        assert task["outputType"] == "base64Data" and task["outputFormat"] == "PNG"
        assert task["includeCost"] is True
        result = cut_out(decode_data_uri(task["inputImage"]))
        item: dict[str, Any] = {
            "taskType": task["taskType"],
            "taskUUID": task["taskUUID"],
            "imageUUID": str(uuid.uuid4()),
            "cost": 0.0006,
        }
        if fake.mode == "url":
            item["imageURL"] = fake.file_url(result)
        elif fake.mode == "private_url":
            item["imageURL"] = PRIVATE_URL
        else:
            item["imageBase64Data"] = base64.b64encode(result).decode()
        # Another task's result first: answers are matched by taskUUID, not position.
        other = {**item, "taskUUID": str(uuid.uuid4()), "cost": 9.0}
        return JSONResponse({"data": [other, item]})

    return Starlette(
        routes=[
            Route("/v1", tasks, methods=["POST"]),
            Route("/files/{name}", fake.serve_file),
        ]
    )


@pytest.fixture(scope="module")
def runware_server(serve: Any) -> Fake:
    fake = Fake()
    fake.url = serve(runware_app(fake))
    return fake


@pytest.fixture
def runware(runware_server: Fake) -> Fake:
    runware_server.reset()
    return runware_server


def runware_remover(fake: Fake, egress: EgressPolicy, key: str = RUNWARE_KEY) -> RunwareRemover:
    return RunwareRemover(
        key, "bria:2@1", "runware_rmbg2", "Runware RMBG 2.0", f"{fake.url}/v1", egress=egress
    )


# -- Runware ------------------------------------------------------------------------


async def test_runware_removes_background_inline(runware: Fake, egress: EgressPolicy) -> None:
    remover = runware_remover(runware, egress)
    assert isinstance(remover, RemoteBackgroundRemover)

    result = await remover.remove(scene_png(), timeout_s=10)

    assert_cutout(result.image)
    assert result.cost_usd == pytest.approx(0.0006)
    assert result.elapsed_ms > 0
    (request,) = runware.requests
    assert request["auth"] == f"Bearer {RUNWARE_KEY}"
    assert decode_data_uri(request["body"][0]["inputImage"]) == scene_png()


async def test_runware_downloads_an_image_url_through_egress(
    runware: Fake, egress: EgressPolicy, loopback_only: list[str]
) -> None:
    runware.mode = "url"

    result = await runware_remover(runware, egress).remove(scene_png(), timeout_s=10)

    assert_cutout(result.image)
    assert any("/files/" in url for url in loopback_only)


async def test_runware_result_url_into_private_network_is_refused(
    runware: Fake, egress: EgressPolicy, loopback_only: list[str]
) -> None:
    runware.mode = "private_url"

    with pytest.raises(ServiceUnavailable) as caught:
        await runware_remover(runware, egress).remove(scene_png(), timeout_s=10)

    assert caught.value.code == "provider_result_refused"
    assert "10.0.0.1" in caught.value.message
    assert isinstance(caught.value.__cause__, EgressRefused)
    assert not any("10.0.0.1" in url for url in loopback_only), "no connection may be made"


async def test_runware_5xx_is_service_unavailable(runware: Fake, egress: EgressPolicy) -> None:
    runware.mode = "error500"

    with pytest.raises(ServiceUnavailable) as caught:
        await runware_remover(runware, egress).remove(scene_png(), timeout_s=10)

    assert caught.value.code == "provider_unavailable" and caught.value.retryable
    assert "500" in caught.value.message and "upstream exploded" in caught.value.message


async def test_runware_slow_answer_times_out(runware: Fake, egress: EgressPolicy) -> None:
    runware.mode = "slow"

    with pytest.raises(ServiceUnavailable) as caught:
        await runware_remover(runware, egress).remove(scene_png(), timeout_s=0.3)

    assert caught.value.code == "provider_timeout"
    assert caught.value.message == "API timeout after 0.3s"


async def test_runware_errors_array_is_unprocessable(runware: Fake, egress: EgressPolicy) -> None:
    runware.mode = "rejected"

    with pytest.raises(Unprocessable) as caught:
        await runware_remover(runware, egress).remove(scene_png(), timeout_s=10)

    assert "Invalid value for 'inputImage'" in caught.value.message
    assert "invalidInputImage" in caught.value.message


async def test_runware_bad_key_is_auth_failure_without_the_key(
    runware: Fake, egress: EgressPolicy
) -> None:
    wrong = "rw-wrong-key-0000"

    with pytest.raises(ServiceUnavailable) as caught:
        await runware_remover(runware, egress, key=wrong).remove(scene_png(), timeout_s=10)

    error = caught.value
    assert error.code == "provider_auth_failed" and not error.retryable
    assert "Invalid API key" in error.message
    assert wrong not in error.message and wrong not in str(error.details)


# -- the Kie.ai fake ----------------------------------------------------------------


def kie_app(fake: Fake) -> Starlette:
    def envelope(code: int, msg: str, data: Any = None, status: int = 200) -> JSONResponse:
        return JSONResponse({"code": code, "msg": msg, "data": data}, status)

    def authorized(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {KIE_KEY}"

    def denied(request: Request) -> JSONResponse:
        # Kie.ai answers in its envelope; the key is echoed to test scrubbing.
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        return envelope(401, f"You do not have access permissions (key {key})")

    async def upload(request: Request) -> Response:
        body = await request.json()
        fake.requests.append({"path": "upload", "body": body})
        if not authorized(request):
            return denied(request)
        assert body["fileName"].endswith(".png") and body["uploadPath"]
        url = fake.file_url(decode_data_uri(body["base64Data"]))
        data = {"fileName": body["fileName"], "downloadUrl": url, "mimeType": "image/png"}
        return JSONResponse({"success": True, "code": 200, "msg": "ok", "data": data})

    async def create_task(request: Request) -> Response:
        body = await request.json()
        fake.requests.append({"path": "createTask", "body": body})
        if not authorized(request):
            return denied(request)
        if fake.mode == "error500":
            return PlainTextResponse("bad gateway", status_code=502)
        if fake.mode == "maintenance":
            return envelope(455, "Service is under maintenance")
        assert body["model"] == "recraft/remove-background", body
        # Like the real service, fetch the input from the URL we were given.
        async with httpx.AsyncClient() as client:
            fetched = await client.get(body["input"]["image"])
        source = Image.open(io.BytesIO(fetched.content))
        if min(source.size) < 256:
            return envelope(422, "image: min dimension is 256px")
        task_id = f"task_recraft_{uuid.uuid4().hex[:12]}"
        fake.tasks[task_id] = {"polls": 0, "result": cut_out(fetched.content)}
        return envelope(200, "success", {"taskId": task_id})

    async def record_info(request: Request) -> Response:
        task_id = request.query_params.get("taskId", "")
        fake.requests.append({"path": "recordInfo", "taskId": task_id})
        if not authorized(request):
            return denied(request)
        task = fake.tasks.get(task_id)
        if task is None:
            return envelope(404, "task not found")
        task["polls"] += 1
        record: dict[str, Any] = {"taskId": task_id, "model": "recraft/remove-background"}
        if fake.mode == "never_done" or task["polls"] <= 2:
            state = "waiting" if task["polls"] == 1 else "generating"
            return envelope(200, "success", {**record, "state": state, "resultJson": ""})
        if fake.mode == "fail":
            failed = {"state": "fail", "failCode": "400", "failMsg": "No subject found in image"}
            return envelope(200, "success", {**record, **failed})
        url = PRIVATE_URL if fake.mode == "private_url" else fake.file_url(task["result"])
        result = {"state": "success", "resultJson": json.dumps({"resultUrls": [url]})}
        return envelope(200, "success", {**record, **result, "failCode": "", "failMsg": ""})

    return Starlette(
        routes=[
            Route("/api/file-base64-upload", upload, methods=["POST"]),
            Route("/api/v1/jobs/createTask", create_task, methods=["POST"]),
            Route("/api/v1/jobs/recordInfo", record_info),
            Route("/files/{name}", fake.serve_file),
        ]
    )


@pytest.fixture(scope="module")
def kie_server(serve: Any) -> Fake:
    fake = Fake()
    fake.url = serve(kie_app(fake))
    return fake


@pytest.fixture
def kie(kie_server: Fake) -> Fake:
    kie_server.reset()
    return kie_server


def kie_remover(fake: Fake, egress: EgressPolicy, **kwargs: Any) -> KieRecraftRemover:
    kwargs.setdefault("upload_base_url", fake.url)
    return KieRecraftRemover(
        kwargs.pop("api_key", KIE_KEY), fake.url, poll_interval_s=0.01, egress=egress, **kwargs
    )


def paths(fake: Fake) -> list[str]:
    return [request["path"] for request in fake.requests]


# -- Kie.ai -------------------------------------------------------------------------


async def test_kie_uploads_creates_polls_and_downloads(kie: Fake, egress: EgressPolicy) -> None:
    remover = kie_remover(kie, egress)
    assert isinstance(remover, RemoteBackgroundRemover)

    result = await remover.remove(scene_png(), timeout_s=10)

    assert_cutout(result.image)
    assert result.cost_usd == pytest.approx(0.005)
    # waiting, generating, then success: three polls of the same task.
    assert paths(kie) == ["upload", "createTask", "recordInfo", "recordInfo", "recordInfo"]
    (task_id,) = kie.tasks
    assert kie.tasks[task_id]["polls"] == 3
    assert {r["taskId"] for r in kie.requests if r["path"] == "recordInfo"} == {task_id}


async def test_kie_uses_an_injected_publisher(kie: Fake, egress: EgressPolicy) -> None:
    published: list[str] = []

    async def publish(image_png: bytes) -> str:
        published.append(kie.file_url(image_png))
        return published[-1]

    result = await kie_remover(kie, egress, publish=publish).remove(scene_png(), timeout_s=10)

    assert_cutout(result.image)
    assert len(published) == 1
    assert "upload" not in paths(kie)
    create = next(r for r in kie.requests if r["path"] == "createTask")
    assert create["body"] == {
        "model": "recraft/remove-background",
        "input": {"image": published[0]},
    }


async def test_kie_failed_task_is_unprocessable(kie: Fake, egress: EgressPolicy) -> None:
    kie.mode = "fail"

    with pytest.raises(Unprocessable) as caught:
        await kie_remover(kie, egress).remove(scene_png(), timeout_s=10)

    assert "No subject found in image" in caught.value.message


async def test_kie_error_code_is_unprocessable(kie: Fake, egress: EgressPolicy) -> None:
    # An image under Kie.ai's documented 256 px minimum.
    with pytest.raises(Unprocessable) as caught:
        await kie_remover(kie, egress).remove(scene_png(128), timeout_s=10)

    assert "min dimension is 256px" in caught.value.message
    assert caught.value.details["status"] == 422


@pytest.mark.parametrize(("mode", "status"), [("error500", 502), ("maintenance", 455)])
async def test_kie_outage_is_service_unavailable(
    kie: Fake, egress: EgressPolicy, mode: str, status: int
) -> None:
    kie.mode = mode

    with pytest.raises(ServiceUnavailable) as caught:
        await kie_remover(kie, egress).remove(scene_png(), timeout_s=10)

    assert caught.value.code == "provider_unavailable"
    assert caught.value.details["status"] == status


async def test_kie_polling_stops_at_the_timeout(kie: Fake, egress: EgressPolicy) -> None:
    kie.mode = "never_done"

    with pytest.raises(ServiceUnavailable) as caught:
        await kie_remover(kie, egress).remove(scene_png(), timeout_s=0.5)

    assert caught.value.message == "API timeout after 0.5s"
    assert paths(kie).count("recordInfo") > 3


async def test_kie_bad_key_is_auth_failure_without_the_key(kie: Fake, egress: EgressPolicy) -> None:
    wrong = "kie-wrong-key-1111"

    with pytest.raises(ServiceUnavailable) as caught:
        await kie_remover(kie, egress, api_key=wrong).remove(scene_png(), timeout_s=10)

    error = caught.value
    assert error.code == "provider_auth_failed" and not error.retryable
    assert "access permissions" in error.message
    assert wrong not in error.message and wrong not in str(error.details)


async def test_kie_result_url_into_private_network_is_refused(
    kie: Fake, egress: EgressPolicy, loopback_only: list[str]
) -> None:
    kie.mode = "private_url"

    with pytest.raises(ServiceUnavailable) as caught:
        await kie_remover(kie, egress).remove(scene_png(), timeout_s=10)

    assert caught.value.code == "provider_result_refused"
    assert not any("10.0.0.1" in url for url in loopback_only)


# -- build_providers ----------------------------------------------------------------


def provider_settings(tmp_path: Any, **providers: Any) -> Settings:
    return Settings.model_validate(
        {"home": str(tmp_path), "egress": {"allow": ["127.0.0.1"]}, "providers": providers}
    )


def test_build_providers_without_keys_is_empty(tmp_path: Any) -> None:
    assert build_providers(provider_settings(tmp_path)) == {}


def test_build_providers_reads_keys_from_the_environment(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISIONSERVE_HOME", str(tmp_path))
    monkeypatch.setenv("VISIONSERVE_PROVIDERS__RUNWARE_API_KEY", RUNWARE_KEY)
    monkeypatch.setenv("VISIONSERVE_PROVIDERS__KIE_API_KEY", KIE_KEY)

    removers = build_providers(Settings())

    assert set(removers) == {"runware_rmbg2", "runware_birefnet_portrait", "kie_recraft"}
    assert all(isinstance(r, RemoteBackgroundRemover) for r in removers.values())
    assert {r.model_id: r.model_name for r in removers.values()} == {
        "runware_rmbg2": "Runware RMBG 2.0",
        "runware_birefnet_portrait": "Runware BiRefNet Portrait",
        "kie_recraft": "Kie.ai Recraft BG",
    }
    rmbg, portrait = removers["runware_rmbg2"], removers["runware_birefnet_portrait"]
    assert isinstance(rmbg, RunwareRemover) and isinstance(portrait, RunwareRemover)
    assert (rmbg.model_air, portrait.model_air) == ("bria:2@1", "runware:112@10")
    assert RUNWARE_KEY not in repr(removers)


def test_build_providers_with_one_key(tmp_path: Any) -> None:
    removers = build_providers(provider_settings(tmp_path, kie_api_key=KIE_KEY))

    assert set(removers) == {"kie_recraft"}


async def test_built_providers_talk_to_the_configured_urls(
    tmp_path: Any, runware: Fake, kie: Fake
) -> None:
    settings = provider_settings(
        tmp_path,
        runware_api_key=RUNWARE_KEY,
        runware_base_url=f"{runware.url}/v1",
        kie_api_key=KIE_KEY,
        kie_base_url=kie.url,
        kie_upload_base_url=kie.url,
        kie_poll_interval_s=0.01,
    )
    removers = build_providers(settings)

    results = await asyncio.gather(
        *(r.remove(scene_png(), timeout_s=10) for r in removers.values())
    )

    for result in results:
        assert_cutout(result.image)
    models = sorted(request["body"][0]["model"] for request in runware.requests)
    assert models == ["bria:2@1", "runware:112@10"]
    assert [r.cost_usd for r in results] == pytest.approx([0.0006, 0.0006, 0.005])


# -- through the cutout API: provider deployments beside a local model ------------------


async def test_shotgun_mixes_local_and_provider_models_with_costs(
    tmp_path: Any, runware: Fake, kie: Fake
) -> None:
    """The remote-<id> deployment classes in the cutout graph, answered by the fakes."""
    from deployments.bg_removal import BackgroundRemoval
    from deployments.remote_bg import RemoteBackgroundRemoval
    from deployments.upscale import Upscale
    from graphs.cutout import CutoutGraph
    from tests.fakes import LocalHandle, instance
    from visionserve.api.app import create_app
    from visionserve.platform.context import build_context
    from visionserve.settings import get_settings
    from visionserve.surfaces import load_surface
    from visionserve.surfaces.cutout.service import CATALOGUE, CutoutCatalogue

    settings = provider_settings(
        tmp_path,
        runware_api_key=RUNWARE_KEY,
        runware_base_url=f"{runware.url}/v1",
        kie_api_key=KIE_KEY,
        kie_base_url=kie.url,
        kie_upload_base_url=kie.url,
        kie_poll_interval_s=0.01,
    )
    settings.model_home = get_settings().model_home
    snapshot = settings.model_dump(mode="json")
    removers = {"local_u2netp": LocalHandle(instance(BackgroundRemoval, "u2netp", snapshot))}
    names = {"local_u2netp": "Local U2-Net-P"}
    for model_id, provider in build_providers(settings).items():
        removers[model_id] = LocalHandle(instance(RemoteBackgroundRemoval, model_id, snapshot, 10))
        names[model_id] = provider.model_name
    upscaler = LocalHandle(instance(Upscale, snapshot))
    graph = LocalHandle(instance(CutoutGraph, removers, names, upscaler, 10.0))
    catalogue = CutoutCatalogue(models=names, upscale_methods=["lanczos"])  # as the builder says
    ctx = build_context(
        settings,
        handles={"cutout-graph": graph, "upscale": upscaler},
        runtime={CATALOGUE: catalogue},
    )
    app = create_app(ctx, [load_surface("cutout")])
    image = base64.b64encode(scene_png()).decode()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=60
    ) as client:
        r = await client.post("/cutout/remove-background", json={"image": image})
        body = r.json()
        assert r.status_code == 200 and body["status"] == "completed", r.text
        costs = {x["model_id"]: x["cost_usd"] for x in body["results"]}
        assert costs == pytest.approx(
            {
                "local_u2netp": 0.0,
                "runware_rmbg2": 0.0006,
                "runware_birefnet_portrait": 0.0006,
                "kie_recraft": 0.005,
            }
        )
        assert body["total_cost_usd"] == pytest.approx(0.0062)
        for result in body["results"]:
            png = base64.b64decode(result["image_base64"])
            if result["model_id"] == "local_u2netp":  # a real model: near-opaque, not exact
                alpha = Image.open(io.BytesIO(png)).getchannel("A")
                assert alpha.getpixel((128, 128)) > 240 and alpha.getpixel((2, 2)) < 16
            else:
                assert_cutout(png)

        runware.mode = "slow"  # past the 1 s per-model timeout: that model alone fails
        r = await client.post("/cutout/remove-background", json={"image": image, "timeout_s": 1})
        body = r.json()
        assert r.status_code == 200 and body["status"] == "partial"
        failed = {x["model_id"]: x["error"] for x in body["results"] if x["status"] == "error"}
        assert set(failed) == {"runware_rmbg2", "runware_birefnet_portrait"}
        assert all("timeout" in e.lower() for e in failed.values())
        assert {x["model_id"] for x in body["results"] if x["status"] == "success"} == {
            "local_u2netp",
            "kie_recraft",
        }
