"""edit over HTTP without Ray: the real Edit deployment class and real models in process.

The bg-removal (u2netp) and upscale deployment classes run behind in-process handles
(``tests.fakes``), the edit deployment awaits them as it awaits Serve handles, and a
job worker plus the outbox deliverer run beside the app, so a test sees what a client
of the cluster sees: a 202, then the callback on a loopback receiver.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import pytest_asyncio
from PIL import Image

from deployments.bg_removal import BackgroundRemoval
from deployments.edit import Edit
from deployments.upscale import Upscale
from tests.fakes import LocalHandle, instance
from tests.fixtures.receiver import Receiver
from visionserve.api.app import create_app
from visionserve.platform import webhooks
from visionserve.platform.context import AppContext, build_context
from visionserve.platform.worker import Worker
from visionserve.settings import Settings, get_settings
from visionserve.surfaces import load_surface
from visionserve.surfaces.edit.batch import SequentialRunner
from visionserve.surfaces.edit.jobs import BATCH_RUNNER, EDIT_HANDLE

B64_KEYS = {"status", "job_id", "filename", "result_image_base64", "result_mime_type"}
COS_KEYS = {"status", "job_id", "filename", "object_key", "result_url", "expires_in"}
FAILED_KEYS = {"status", "job_id", "filename", "error"}
BATCH_KEYS = {
    "status",
    "job_id",
    "total_files",
    "processed",
    "failed",
    "fallback_local",
    "duration_seconds",
    "total_files_processed",
    "output_bucket",
    "output_prefix",
    "errors",
}


@pytest.fixture(scope="module")
def image_models() -> dict[str, Any]:
    """bg-removal and upscale deployment classes, loaded once per module."""
    snapshot = Settings(model_home=get_settings().model_home).model_dump(mode="json")
    return {
        "bg": instance(BackgroundRemoval, "u2netp", snapshot),
        "upscale": instance(Upscale, snapshot),
    }


def edit_deployment(settings: Settings, models: dict[str, Any]) -> Any:
    """The Edit deployment class over in-process handles of the image models."""
    return instance(
        Edit,
        settings.model_dump(mode="json"),
        LocalHandle(models["bg"], label="bg-u2netp"),
        LocalHandle(models["upscale"], label="upscale"),
        "waifu2x-upconv7",
    )


@dataclass
class EditApp:
    client: httpx.AsyncClient
    ctx: AppContext
    settings: Settings
    loops: list[asyncio.Task[None]] = field(default_factory=list)

    async def post(
        self, path: str, body: dict[str, Any], callback: str | None, header: str = "callbackUrl"
    ) -> httpx.Response:
        headers = {header: callback} if callback is not None else {}
        return await self.client.post(f"/edit{path}", json=body, headers=headers)

    async def callbacks(self, receiver: Receiver, count: int, timeout: float = 120.0) -> list[Any]:
        """Wait (worker and deliverer running) until ``count`` callbacks arrived."""
        for _ in range(int(timeout / 0.1)):
            if len(receiver.requests) >= count:
                break
            await asyncio.sleep(0.1)
        return list(receiver.requests)


@pytest.fixture
def settings_home(settings: Settings) -> Settings:
    settings.model_home = get_settings().model_home
    return settings


@pytest_asyncio.fixture(loop_scope="function")
async def make_app(settings_home: Settings, image_models: dict[str, Any]):  # type: ignore[no-untyped-def]
    """``make(settings=None)``: an app, a job worker and a deliverer, stopped at the end."""
    made: list[tuple[Worker, webhooks.Deliverer, list[asyncio.Task[None]]]] = []

    async def make(settings: Settings | None = None) -> EditApp:
        settings = settings or settings_home
        edit = edit_deployment(settings, image_models)
        ctx = build_context(
            settings,
            handles={EDIT_HANDLE: LocalHandle(edit, label="edit")},
            runtime={BATCH_RUNNER: SequentialRunner()},
        )
        app = create_app(ctx, [load_surface("edit")])
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000", timeout=120
        )
        worker = Worker(ctx)
        deliverer = webhooks.Deliverer(
            settings.database_url, settings.webhooks, ctx.egress, worker_id="edit-test"
        )
        loops = [asyncio.create_task(worker.run()), asyncio.create_task(deliverer.run())]
        made.append((worker, deliverer, loops))
        return EditApp(client, ctx, settings, loops)

    yield make
    for worker, deliverer, loops in made:
        await worker.stop()
        deliverer.stop()
        await asyncio.gather(*loops)


def b64(img: Image.Image, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return base64.b64encode(buf.getvalue()).decode()


def png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def body_of(received: Any) -> dict[str, Any]:
    return json.loads(received.body)  # type: ignore[no-any-return]


@dataclass
class GenerativeStub:
    """A loopback ``POST /v1/images/edits`` server: answers as scripted, records prompts."""

    url: str
    # "quota" (HTTP 429 insufficient_quota) or "ok" (gpt-image-1's b64_json: the image inverted)
    mode: str = "quota"
    prompts: list[str] = field(default_factory=list)


@pytest.fixture
def generative_stub() -> Iterator[GenerativeStub]:
    state = GenerativeStub(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.prompts.append(raw.decode("latin-1"))
            if state.mode == "quota":
                out = json.dumps(
                    {
                        "error": {
                            "message": "You exceeded your current quota",
                            "type": "insufficient_quota",
                            "code": "insufficient_quota",
                        }
                    }
                ).encode()
                self.send_response(429)
            else:
                img = Image.new("RGB", (64, 48), (10, 200, 30))
                out = json.dumps({"data": [{"b64_json": b64(img)}]}).encode()
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
