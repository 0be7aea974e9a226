"""documents over HTTP (ASGI, no Ray): the chunkr task API with the real stages in-process."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest

from deployments.documents import Chunking, DocumentPages, Layout, Ocr
from graphs.documents import DocumentsGraph
from tests.documents_fixtures import HEADING, ITEMS, PARAGRAPH, TABLE, TITLE, report_pdf
from tests.fakes import LocalHandle, instance
from visionserve.api.app import create_app
from visionserve.api.context import build_context
from visionserve.api.surfaces import SURFACES
from visionserve.settings import get_settings
from visionserve.store.queue import JobQueue
from visionserve.worker import Worker, terminal_webhook

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def env(settings):  # type: ignore[no-untyped-def]
    settings.model_home = get_settings().model_home
    snapshot = settings.model_dump(mode="json")
    graph = instance(
        DocumentsGraph,
        LocalHandle(instance(DocumentPages, snapshot)),
        LocalHandle(instance(Ocr, snapshot)),
        LocalHandle(instance(Layout)),
        LocalHandle(instance(Chunking, snapshot)),
    )
    ctx = build_context(settings, handles={"documents-graph": LocalHandle(graph)})
    app = create_app(ctx, [SURFACES["documents"]])
    key, _ = ctx.keys.create("docs")
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://127.0.0.1:8000/documents",
        timeout=120,
        headers={"Authorization": f"Bearer {key}"},
    )

    def worker() -> Worker:  # a fresh one per run: a stopped worker stays stopped
        return Worker(
            JobQueue(settings.database_url, settings.jobs, on_terminal=terminal_webhook),
            services={"settings": settings, "blobs": ctx.blobs, "handles": ctx.handles},
        )

    return client, ctx, worker


async def run_until(client, make_worker, task_id: str, statuses=("Succeeded", "Failed")) -> dict:  # type: ignore[no-untyped-def]
    worker = make_worker()
    loop = asyncio.create_task(worker.run())
    try:
        for _ in range(600):
            r = await client.get(f"/api/v1/task/{task_id}")
            assert r.status_code == 200, r.text
            task = r.json()
            if task["status"] in statuses:
                return task
            await asyncio.sleep(0.2)
    finally:
        await worker.stop()
        await loop
    raise AssertionError(f"task stuck: {task}")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def all_segments(task: dict) -> list[dict]:
    return [s for c in task["output"]["chunks"] for s in c["segments"]]


async def test_parse_digital_pdf_end_to_end(env) -> None:  # type: ignore[no-untyped-def]
    client, _, worker = env
    r = await client.post(
        "/api/v1/task/parse",
        json={
            "file": b64(report_pdf()),
            "file_name": "report.pdf",
            "chunk_processing": {"target_length": 120, "tokenizer": "Word"},
        },
    )
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["status"] == "Starting" and created["configuration"]["ocr_strategy"] == "All"
    task = await run_until(client, worker, created["task_id"])
    assert task["status"] == "Succeeded", task["message"]
    assert task["output"]["page_count"] == 2 and task["output"]["file_name"] == "report.pdf"
    segs = all_segments(task)
    types = {s["segment_type"] for s in segs}
    assert {"Title", "SectionHeader", "Text", "ListItem", "Table"} <= types, types
    (title,) = [s for s in segs if s["segment_type"] == "Title"]  # one title, then headers
    assert title["text"] == TITLE and title["html"].startswith("<h1")
    assert any(s["text"] == HEADING for s in segs if s["segment_type"] == "SectionHeader")
    table = next(s for s in segs if s["segment_type"] == "Table")
    for row in TABLE:
        for cell in row:
            assert f">{cell}<" in table["html"], cell
    assert table["html"].count("<tr") == len(TABLE)
    assert "| Region | Units | Revenue |" in table["markdown"]
    text = " ".join(s["text"] for s in segs)
    assert PARAGRAPH.split()[5] in text and HEADING in text
    assert all(item.split()[0] in text for item in ITEMS)
    # Headers/footers are dropped by default (ignore_headers_and_footers)...
    assert "ACME Corporation Internal" not in text
    for chunk in task["output"]["chunks"]:
        if len(chunk["segments"]) > 1:
            assert chunk["chunk_length"] <= 120
        assert chunk["embed"] and chunk["embedding"] is None
    # ...and reading order is top to bottom on page 1.
    page1 = [s for s in segs if s["page_number"] == 1]
    tops = [s["bbox"]["top"] for s in page1]
    assert tops == sorted(tops)
    assert task["output"]["pdf_url"].startswith("http://127.0.0.1:8000/blobs/")


async def test_page_strategy_tokenizers_and_embeddings(env) -> None:  # type: ignore[no-untyped-def]
    client, _, worker = env
    r = await client.post(
        "/api/v1/task/parse",
        json={
            "file": b64(report_pdf(3)),
            "segmentation_strategy": "Page",
            "ocr_strategy": "Auto",
            "chunk_processing": {
                "target_length": 1000,
                "tokenizer": "Cl100kBase",
                "ignore_headers_and_footers": False,
                "embeddings": True,
            },
        },
    )
    task = await run_until(client, worker, r.json()["task_id"])
    assert task["status"] == "Succeeded", task["message"]
    segs = all_segments(task)
    assert [s["segment_type"] for s in segs] == ["Page"] * 3
    assert "ACME Corporation Internal" in segs[0]["text"]
    for chunk in task["output"]["chunks"]:
        assert len(chunk["embedding"]) == 384


async def test_task_lifecycle_rules(env) -> None:  # type: ignore[no-untyped-def]
    client, _, worker = env
    created = (await client.post("/api/v1/task/parse", json={"file": b64(report_pdf(1))})).json()
    task_id = created["task_id"]
    r = await client.delete(f"/api/v1/task/{task_id}")
    assert r.status_code == 400 and r.json() == "Task cannot be deleted: status is Starting"
    r = await client.patch(f"/api/v1/task/{task_id}/parse", json={"high_resolution": True})
    assert r.status_code == 400 and r.json() == "Task cannot be updated"
    assert (await client.get(f"/api/v1/task/{task_id}/cancel")).json() == "Task cancelled"
    assert (await client.get(f"/api/v1/task/{task_id}")).json()["status"] == "Cancelled"
    r = await client.get(f"/api/v1/task/{task_id}/cancel")
    assert r.status_code == 400 and r.json() == "Task cannot be cancelled"
    assert (await client.delete(f"/api/v1/task/{task_id}")).json() == "Task deleted"
    r = await client.get(f"/api/v1/task/{task_id}")
    assert r.status_code == 404 and r.json() == "Task not found"

    created = (await client.post("/api/v1/task/parse", json={"file": b64(report_pdf(1))})).json()
    done = await run_until(client, worker, created["task_id"])
    r = await client.patch(f"/api/v1/task/{done['task_id']}/parse", json={})
    assert r.status_code == 400 and "unchanged" in r.json()
    r = await client.patch(
        f"/api/v1/task/{done['task_id']}/parse", json={"segmentation_strategy": "Page"}
    )
    assert r.status_code == 200 and r.json()["status"] == "Starting"
    again = await run_until(client, worker, done["task_id"])
    assert {s["segment_type"] for s in all_segments(again)} == {"Page"}

    listed = (await client.get("/api/v1/tasks", params={"page": 1, "limit": 10})).json()
    assert {t["task_id"] for t in listed} == {done["task_id"]}
    assert listed[0]["output"]["chunks"] == []  # include_chunks defaults to false
    r = await client.get("/api/v1/tasks", params={"page": 1})
    assert r.status_code == 400 and "limit" in r.json()
    usage = (await client.get("/api/v1/usage/monthly")).json()
    assert usage["usage"] == 3  # 1 + 1 pages created, + 1 reprocessed


async def test_expiry_hides_then_sweeps(env, settings) -> None:  # type: ignore[no-untyped-def]
    client, ctx, _ = env
    created = (
        await client.post("/api/v1/task/parse", json={"file": b64(report_pdf(1)), "expires_in": 1})
    ).json()
    assert created["expires_at"] is not None
    await asyncio.sleep(1.2)
    r = await client.get(f"/api/v1/task/{created['task_id']}")
    assert r.status_code == 404
    from visionserve.services.documents import DocumentService

    assert DocumentService(settings, ctx.blobs).sweep_expired() == 1
    assert ctx.blobs.list(f"documents/tasks/{created['task_id']}/") == []


async def test_multipart_endpoints_still_work(env) -> None:  # type: ignore[no-untyped-def]
    client, _, worker = env
    r = await client.post(
        "/api/v1/task",
        files={"file": ("r.pdf", report_pdf(1), "application/pdf")},
        data={"configuration": json.dumps({"segmentation_strategy": "Page"})},
    )
    assert r.status_code == 200, r.text
    task = await run_until(client, worker, r.json()["task_id"])
    assert task["status"] == "Succeeded" and task["output"]["file_name"] == "r.pdf"
    r = await client.patch(
        f"/api/v1/task/{task['task_id']}",
        data={"configuration": json.dumps({"high_resolution": True})},
    )
    assert r.status_code == 200 and r.json()["configuration"]["high_resolution"] is True


@pytest.mark.parametrize(
    ("file", "status", "message"),
    [
        ("!!!notbase64", 400, "Invalid base64 data"),
        (b64(b"just text, not a document"), 400, "Unsupported file type"),
        (b64(report_pdf(1)[:300]), 400, None),
        ("http://10.0.0.1/doc.pdf", 400, None),
    ],
)
async def test_bad_files_are_400_strings(env, file, status, message) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    r = await client.post("/api/v1/task/parse", json={"file": file})
    assert r.status_code == status, r.text
    assert isinstance(r.json(), str)
    if message:
        assert r.json() == message


async def test_auth_and_usage_limit(env, settings) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    r = await client.get("/api/v1/tasks", headers={"Authorization": ""})
    assert r.status_code == 401 and isinstance(r.json(), str)
    settings.documents.monthly_page_limit = 2
    ok = await client.post("/api/v1/task/parse", json={"file": b64(report_pdf(2))})
    assert ok.status_code == 200
    r = await client.post("/api/v1/task/parse", json={"file": b64(report_pdf(1))})
    assert r.status_code == 429 and r.json() == "Usage limit exceeded"


async def test_unknown_tokenizer_is_400_at_creation(env) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    r = await client.post(
        "/api/v1/task/parse",
        json={"file": b64(report_pdf(1)), "chunk_processing": {"tokenizer": "acme/tiny-tokenizer"}},
    )
    assert r.status_code == 400
    assert "tokenizers/acme/tiny-tokenizer/tokenizer.json" in r.json()


def _pdf_with_a_huge_page() -> bytes:
    import pymupdf

    doc = pymupdf.open(stream=report_pdf(1), filetype="pdf")
    doc.new_page(width=14000, height=14000).insert_text((72, 72), "huge")  # a render bomb
    doc.new_page().insert_text((72, 300), "The last page survives")
    return doc.tobytes()


async def test_error_handling_continue_keeps_the_other_pages(env) -> None:  # type: ignore[no-untyped-def]
    client, _, worker = env
    data = b64(_pdf_with_a_huge_page())
    r = await client.post("/api/v1/task/parse", json={"file": data, "error_handling": "Continue"})
    task = await run_until(client, worker, r.json()["task_id"])
    assert task["status"] == "Succeeded", task["message"]
    assert "1 failed page(s): page 2" in task["message"]
    text = " ".join(s["text"] for c in task["output"]["chunks"] for s in c["segments"])
    assert TITLE in text and "The last page survives" in text
    r = await client.post("/api/v1/task/parse", json={"file": data})  # error_handling: Fail
    task = await run_until(client, worker, r.json()["task_id"])
    assert task["status"] == "Failed" and "page 2" in task["message"]


async def test_pictures_are_cropped_and_base64_urls(env) -> None:  # type: ignore[no-untyped-def]
    import io

    import pymupdf
    from PIL import Image

    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "A page with a chart", fontsize=16)
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (30, 120, 200)).save(buf, "PNG")
    page.insert_image(pymupdf.Rect(100, 150, 400, 350), stream=buf.getvalue())
    page.insert_text((100, 370), "Figure 1: Sales by month", fontsize=9)
    client, _, worker = env
    r = await client.post("/api/v1/task/parse", json={"file": b64(doc.tobytes())})
    task = await run_until(client, worker, r.json()["task_id"])
    segs = [s for c in task["output"]["chunks"] for s in c["segments"]]
    (picture,) = [s for s in segs if s["segment_type"] == "Picture"]
    assert picture["image"].startswith("http://127.0.0.1:8000/blobs/")
    assert picture["image"] in picture["html"]
    assert any(s["segment_type"] == "Caption" for s in segs)
    inline = (
        await client.get(f"/api/v1/task/{task['task_id']}", params={"base64_urls": True})
    ).json()
    (picture,) = [
        s
        for c in inline["output"]["chunks"]
        for s in c["segments"]
        if s["segment_type"] == "Picture"
    ]
    assert picture["image"].startswith("data:image/png;base64,")
    png = Image.open(io.BytesIO(base64.b64decode(picture["image"].split(",", 1)[1])))
    # The chart is 300 pt = 625 px at 150 DPI; the detector's box may add a margin.
    assert 600 <= png.width <= 720
    assert png.convert("RGB").getpixel((png.width // 2, png.height // 2)) == (30, 120, 200)
