"""extract over HTTP (ASGI, no Ray): the real graph, engine and OCR classes in process."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from deployments.documents import Ocr
from deployments.extraction import Extraction
from graphs.extract import ExtractGraph
from tests.fakes import LocalHandle, instance
from visionserve.api.app import create_app
from visionserve.platform.context import AppContext, build_context
from visionserve.platform.worker import Worker
from visionserve.settings import Settings, get_settings
from visionserve.surfaces import load_surface

BASE = "http://127.0.0.1:8000/extract/api"
SCHEMA = {
    "vendor_name": "string",
    "invoice_number": "string",
    "invoice_date": "date",
    "total_amount": "number",
}
# What invoice_pdf() prints, and what extraction must find.
TRUTH = {
    "vendor_name": "Acme Corporation",
    "invoice_number": "INV-2024-001",
    "invoice_date": "2024-01-15",
    "total_amount": 1942.92,
}


def invoice_pdf(pages: int = 1) -> bytes:
    """A digital invoice (text layer) with the TRUTH fields as label: value lines."""
    import pymupdf

    doc = pymupdf.open()
    for n in range(pages):
        page = doc.new_page(width=595, height=842)
        page.insert_text((50, 60), "Acme Corporation", fontsize=20)
        page.insert_text((50, 80), "12 Market Street, Springfield", fontsize=10)
        page.insert_text((50, 140), "INVOICE", fontsize=16)
        page.insert_text((50, 170), "Invoice Number: INV-2024-001", fontsize=11)
        page.insert_text((50, 188), "Invoice Date: 2024-01-15", fontsize=11)
        page.insert_text((50, 206), "Bill To: Globex Ltd", fontsize=11)
        page.insert_text((50, 260), "Description", fontsize=11)
        page.insert_text((400, 260), "Amount", fontsize=11)
        page.insert_text((50, 280), "Consulting services", fontsize=11)
        page.insert_text((400, 280), "1,632.71", fontsize=11)
        page.insert_text((50, 300), "Tax (19%)", fontsize=11)
        page.insert_text((400, 300), "310.21", fontsize=11)
        page.insert_text((50, 330), "Total Amount: 1,942.92", fontsize=12)
        if n:
            page.insert_text((50, 800), f"Page {n + 1}", fontsize=8)
    data = doc.tobytes()
    doc.close()
    return bytes(data)


def rendered(pdf: bytes, fmt: str = "png", dpi: int = 150) -> bytes:
    """The PDF's first page as a raster image (no text layer: OCR reads it)."""
    import io

    import pymupdf
    from PIL import Image

    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        pix = doc[0].get_pixmap(dpi=dpi)
        img = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
    out = io.BytesIO()
    img.save(out, format={"jpg": "JPEG"}.get(fmt, fmt.upper()))
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="session")
def _embedder() -> Any:
    """MiniLM loaded once for the session (each test builds its own replicas)."""
    from visionserve.models.embedding import Embedder

    return Embedder(threads=1)


class Env:
    def __init__(self, ctx: AppContext, app: Any, key: str) -> None:
        self.ctx, self.app = ctx, app
        self.client = self.client_for(key)

    def client_for(self, key: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=BASE, timeout=120, headers=headers
        )

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[Worker]:
        """A job worker running beside the app until the block ends."""
        worker = Worker(self.ctx)
        loop = asyncio.create_task(worker.run())
        try:
            yield worker
        finally:
            await worker.stop()
            await loop

    async def pattern(self, **fields: Any) -> str:
        body = {"name": "Invoices", "schema": SCHEMA, **fields}
        r = await self.client.post("/patterns", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["data"]["pattern_id"])

    async def finished(self, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
        """Poll GET /jobs/{id} until it completes or fails (a worker must be running)."""
        for _ in range(int(timeout_s / 0.1)):
            r = await self.client.get(f"/jobs/{job_id}")
            data = r.json()["data"]
            if data["status"] in ("completed", "failed"):
                return dict(r.json())
            await asyncio.sleep(0.1)
        raise AssertionError(f"job {job_id} stuck: {data}")


def make_settings(settings: Settings, **extract: Any) -> Settings:
    settings.model_home = get_settings().model_home
    settings.public_url = "https://extract.example.com"
    for name, value in extract.items():
        setattr(settings.extract, name, value)
    return settings


@pytest.fixture
def build_env(
    settings: Settings, _embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Env]:
    """``build_env(**extract_settings)``: the extract app with the real graph in process."""
    import visionserve.models.embedding as embedding

    monkeypatch.setattr(embedding, "Embedder", lambda *a, **k: _embedder)

    def build(**extract: Any) -> Env:
        s = make_settings(settings, **extract)
        snapshot = s.model_dump(mode="json")
        graph = instance(
            ExtractGraph,
            LocalHandle(instance(Extraction, snapshot)),
            LocalHandle(instance(Ocr, snapshot)),
        )
        ctx = build_context(s, handles={"extract-graph": LocalHandle(graph)})
        app = create_app(ctx, [load_surface("extract")])
        key, _ = ctx.keys.create("extract-tests")
        return Env(ctx, app, key)

    return build


@pytest.fixture
def env(build_env: Callable[..., Env]) -> Env:
    """Sync window of 20 s: a job with a worker running answers 200 with its result."""
    return build_env(sync_window_s=20.0)


@pytest.fixture
def http_file_server() -> Any:
    """``http_file_server({path: body})`` -> ``{path: url}``, served until the test ends."""
    from contextlib import ExitStack

    from tests.extract_http import serve_files

    with ExitStack() as stack:
        yield lambda files: stack.enter_context(serve_files(files))
