"""documents over HTTP (ASGI, no Ray): the chunkr task API with the real stages in-process."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from deployments.documents import Chunking, DocumentPages, Layout, Ocr
from graphs.documents import DocumentsGraph
from tests.documents_fixtures import HEADING, ITEMS, PARAGRAPH, TABLE, TITLE, report_pdf
from tests.fakes import LocalHandle, instance
from tests.llm_stub import openai_stub
from visionserve.api.app import create_app
from visionserve.models.documents.config import Configuration
from visionserve.platform.context import build_context
from visionserve.platform.worker import Worker
from visionserve.settings import get_settings
from visionserve.surfaces import load_surface

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
        settings.documents.page_timeout_s,
    )
    ctx = build_context(settings, handles={"documents-graph": LocalHandle(graph)})
    app = create_app(ctx, [load_surface("documents")])
    key, _ = ctx.keys.create("docs")
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://127.0.0.1:8000/documents",
        timeout=120,
        headers={"Authorization": f"Bearer {key}"},
    )

    def worker() -> Worker:  # a fresh one per run: a stopped worker stays stopped
        return Worker(ctx)

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
    from visionserve.surfaces.documents.service import DocumentService

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
    assert r.status_code == 429
    assert r.json().startswith("Usage limit exceeded: monthly page limit of 2 pages reached")
    # Retry-After is the time to the first of next month, not a fixed guess.
    now = datetime.now(UTC)
    resets = (now.replace(day=1, hour=0, minute=0, second=0) + timedelta(days=32)).replace(day=1)
    assert abs(int(r.headers["Retry-After"]) - (resets - now).total_seconds()) < 5


async def test_unknown_tokenizer_is_400_at_creation(env, settings) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    r = await client.post(
        "/api/v1/task/parse",
        json={"file": b64(report_pdf(1)), "chunk_processing": {"tokenizer": "acme/tiny-tokenizer"}},
    )
    assert r.status_code == 400
    assert "<model home>/tokenizers/acme/tiny-tokenizer/tokenizer.json" in r.json()
    assert str(settings.model_home) not in r.json()  # no server paths in errors


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


async def test_cancelling_a_queued_task_goes_through_the_queue(env, settings) -> None:  # type: ignore[no-untyped-def]
    from visionserve.store.db import session_scope
    from visionserve.store.records import Job, WebhookDelivery
    from visionserve.surfaces.documents.records import DocumentTask

    client, ctx, _ = env
    created = (await client.post("/api/v1/task/parse", json={"file": b64(report_pdf(1))})).json()
    task_id = created["task_id"]
    with session_scope(settings.database_url) as s:  # a job that announces its end
        job_id = s.get(DocumentTask, task_id).job_id
        s.get(Job, job_id).webhook_url = "https://hooks.example.com/documents"
    assert (await client.get(f"/api/v1/task/{task_id}/cancel")).json() == "Task cancelled"
    job = ctx.queue.get(job_id)
    assert job.status == "cancelled" and job.finished_at is not None
    with session_scope(settings.database_url) as s:  # the queue's terminal hook ran
        hooks = s.query(WebhookDelivery).filter_by(url="https://hooks.example.com/documents")
        assert [(h.event_id, h.payload["status"]) for h in hooks] == [
            (f"job.cancelled:{job_id}", "cancelled")
        ]
    assert (job.error_code, job.error_category) == ("cancelled", "cancelled")


class ExplodingGraph:
    """A documents graph whose failure carries internals a client must never see."""

    async def parse(self, task_id: str, input_key: str, config: dict) -> dict:  # type: ignore[type-arg]
        raise RuntimeError("/secret/server/path kaput")


async def test_a_graph_crash_fails_the_task_with_a_public_message(settings, library_log) -> None:  # type: ignore[no-untyped-def]
    settings.model_home = get_settings().model_home
    ctx = build_context(settings, handles={"documents-graph": LocalHandle(ExplodingGraph())})
    app = create_app(ctx, [load_surface("documents")])
    key, _ = ctx.keys.create("docs")
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://127.0.0.1:8000/documents",
        headers={"Authorization": f"Bearer {key}"},
    )
    created = (await client.post("/api/v1/task/parse", json={"file": b64(report_pdf(1))})).json()
    task = await run_until(client, lambda: Worker(ctx), created["task_id"])
    assert task["status"] == "Failed"
    for leaked in ("/secret", "kaput", "RuntimeError"):
        assert leaked not in task["message"], task["message"]
    assert task["message"].startswith("Internal error")
    from visionserve.store.db import session_scope
    from visionserve.surfaces.documents.records import DocumentTask

    with session_scope(settings.database_url) as s:
        job_id = s.get(DocumentTask, created["task_id"]).job_id
    job = ctx.queue.get(job_id)
    assert (job.status, job.error, job.error_category) == ("failed", task["message"], "internal")
    assert job.id in task["message"]  # where to look in the log...
    logged = [r for r in library_log.records if r.exc_info and job.id in r.getMessage()]
    assert len(logged) == 1 and "/secret/server/path kaput" in library_log.text  # ...once


# --- the configuration: validated at creation, stored validated, read by every stage ------


@pytest.fixture
def llm_endpoint(settings):  # type: ignore[no-untyped-def]
    """An OpenAI-compatible stub on loopback, configured as the LLM endpoint."""

    def answer(body: dict) -> str:  # type: ignore[type-arg]
        return "LLM: " + body["messages"][0]["content"][0]["text"].split("\n\n", 1)[1]

    with openai_stub(answer) as (url, seen):
        settings.llm.base_url, settings.llm.model = url, "stub"
        yield seen


@pytest.fixture
def llm_env(llm_endpoint, env):  # type: ignore[no-untyped-def]
    return env  # built after llm_endpoint: its deployments see the endpoint


@pytest.mark.parametrize("key", ["SectionHeader", "section_header"])
async def test_segment_processing_llm_for_section_headers(llm_env, llm_endpoint, key) -> None:  # type: ignore[no-untyped-def]
    client, _, worker = llm_env
    r = await client.post(
        "/api/v1/task/parse",
        json={"file": b64(report_pdf()), "segment_processing": {key: {"strategy": "LLM"}}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["configuration"]["segment_processing"] == {
        "section_header": {
            "html": None,
            "markdown": None,
            "crop_image": None,
            "strategy": "LLM",
            "format": None,
            "llm": None,
            "embed_sources": None,
        }
    }
    task = await run_until(client, worker, r.json()["task_id"])
    assert task["status"] == "Succeeded", task["message"]
    assert "llm_processing was not applied" not in task["message"]
    segs = all_segments(task)
    headers = [s for s in segs if s["segment_type"] == "SectionHeader"]
    assert any(s["text"] == HEADING for s in headers)
    for seg in segs:
        if seg["segment_type"] == "SectionHeader":
            assert seg["llm"] == f"LLM: {seg['text']}"
            assert seg["image"]  # LLM segments are cropped
        else:
            assert seg["llm"] is None
    assert len(llm_endpoint) == len(headers)
    assert all(call["body"]["model"] == "stub" for call in llm_endpoint)


async def test_bad_embed_sources_are_refused_before_pages_are_counted(env) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    bad = {"table": {"embed_sources": ["Markdown", "Bogus"]}}
    r = await client.post(
        "/api/v1/task/parse", json={"file": b64(report_pdf(1)), "segment_processing": bad}
    )
    assert r.status_code == 422, r.text
    assert isinstance(r.json(), str) and "segment_processing.table.embed_sources" in r.json()
    r = await client.post(
        "/api/v1/task",
        files={"file": ("r.pdf", report_pdf(1), "application/pdf")},
        data={"configuration": json.dumps({"segment_processing": bad})},
    )
    assert r.status_code == 422, r.text
    assert isinstance(r.json(), str) and "segment_processing.table.embed_sources" in r.json()
    assert (await client.get("/api/v1/usage/monthly")).json()["usage"] == 0
    assert (await client.get("/api/v1/tasks")).json() == []

    created = (await client.post("/api/v1/task/parse", json={"file": b64(report_pdf(1))})).json()
    task_id = created["task_id"]
    r = await client.patch(f"/api/v1/task/{task_id}/parse", json={"segment_processing": bad})
    assert r.status_code == 422 and "embed_sources" in r.json()
    r = await client.patch(
        f"/api/v1/task/{task_id}",
        data={"configuration": json.dumps({"segment_processing": bad})},
    )
    assert r.status_code == 422 and "embed_sources" in r.json()
    assert (await client.get("/api/v1/usage/monthly")).json()["usage"] == 1


async def test_stored_configuration_is_the_validated_one(env, settings) -> None:  # type: ignore[no-untyped-def]
    from visionserve.store.db import session_scope
    from visionserve.surfaces.documents.records import DocumentTask

    client, _, _ = env
    request = {
        "segmentation_strategy": "Page",
        "chunk_processing": {"target_length": 300},
        "segment_processing": {
            "SectionHeader": {"strategy": "LLM"},
            "Table": {"embed_sources": ["html", "content"]},
        },
    }
    r = await client.post("/api/v1/task/parse", json={"file": b64(report_pdf(1)), **request})
    assert r.status_code == 200, r.text
    with session_scope(settings.database_url) as s:
        stored = s.get(DocumentTask, r.json()["task_id"]).configuration
    expected = Configuration.model_validate(request)
    assert stored == expected.model_dump(mode="json")
    assert Configuration.model_validate(stored) == expected  # what the worker loads
    assert set(stored["segment_processing"]) == {"section_header", "table"}
    assert stored["segment_processing"]["table"]["embed_sources"] == ["HTML", "Content"]


# --- the chunkr-ai SDK (0.3.7): its paths, its Authorization header, its tokenizer form ------

PREFIXES = ["/api/v1", ""]  # the contract's (chunkr-ai 0.1) and chunkr-ai 0.3's


def sdk_body(file: bytes) -> dict:  # type: ignore[type-arg]
    """What ``Chunkr.create_task`` posts: the SDK's own models, serialised by the SDK."""
    from chunkr_ai.api.misc import prepare_upload_data
    from chunkr_ai.models import (
        ChunkProcessing,
        Configuration,
        GenerationConfig,
        GenerationStrategy,
        OcrStrategy,
        SegmentationStrategy,
        SegmentFormat,
        SegmentProcessing,
        Tokenizer,
    )

    config = Configuration(
        ocr_strategy=OcrStrategy.AUTO,
        segmentation_strategy=SegmentationStrategy.LAYOUT_ANALYSIS,
        chunk_processing=ChunkProcessing(target_length=200, tokenizer=Tokenizer.WORD),
        segment_processing=SegmentProcessing(
            table=GenerationConfig(format=SegmentFormat.HTML, strategy=GenerationStrategy.AUTO)
        ),
    )
    body = asyncio.run(prepare_upload_data(file, "report.pdf", config))
    assert body["chunk_processing"]["tokenizer"] == {"Enum": "Word"}  # what has to be accepted
    return body


def sdk_task(body: dict):  # type: ignore[no-untyped-def, type-arg]
    """A response as the SDK reads it: its pydantic model raises on anything it refuses."""
    from chunkr_ai.models import TaskResponse

    return TaskResponse(**body)


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_task_api_under_both_prefixes(env, prefix) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    body = await asyncio.to_thread(sdk_body, report_pdf(1))
    r = await client.post(f"{prefix}/task/parse", json=body)
    assert r.status_code == 200, r.text
    created = sdk_task(r.json())
    assert created.status == "Starting"
    assert created.configuration.chunk_processing.tokenizer.enum_value == "Word"
    assert r.json()["configuration"]["chunk_processing"]["tokenizer"] == "Word"  # stored plain
    task_id = created.task_id
    # task_url, which the SDK polls, names the contract's path; both prefixes serve it.
    assert created.task_url == f"http://127.0.0.1:8000/documents/api/v1/task/{task_id}"
    r = await client.get(f"{prefix}/task/{task_id}", params={"include_chunks": "false"})
    assert r.status_code == 200 and sdk_task(r.json()).task_id == task_id
    assert [t["task_id"] for t in (await client.get(f"{prefix}/tasks")).json()] == [task_id]
    assert (await client.get(f"{prefix}/usage/monthly")).json()["usage"] == 1
    assert (await client.get(f"{prefix}/user")).json()["tier"] == "SelfHosted"
    r = await client.patch(f"{prefix}/task/{task_id}/parse", json={"high_resolution": True})
    assert r.status_code == 400 and r.json() == "Task cannot be updated"
    r = await client.delete(f"{prefix}/task/{task_id}")
    assert r.status_code == 400 and r.json() == "Task cannot be deleted: status is Starting"
    assert (await client.get(f"{prefix}/task/{task_id}/cancel")).json() == "Task cancelled"
    assert sdk_task((await client.get(f"{prefix}/task/{task_id}")).json()).status == "Cancelled"
    assert (await client.delete(f"{prefix}/task/{task_id}")).json() == "Task deleted"
    for method, path in [
        ("GET", f"{prefix}/task/{task_id}"),
        ("GET", f"{prefix}/task/{task_id}/cancel"),
        ("DELETE", f"{prefix}/task/{task_id}"),
        ("PATCH", f"{prefix}/task/{task_id}/parse"),
    ]:
        r = await client.request(method, path, json={} if method == "PATCH" else None)
        assert (r.status_code, r.json()) == (404, "Task not found"), (method, path)
    r = await client.post(f"{prefix}/task/parse", json={"file": ""})
    assert r.status_code == 422 and r.json().startswith("file: ")


async def test_the_sdk_configuration_round_trips_through_a_finished_task(env) -> None:  # type: ignore[no-untyped-def]
    client, _, worker = env
    body = await asyncio.to_thread(sdk_body, report_pdf(1))
    r = await client.post("/task/parse", json=body)
    assert r.status_code == 200, r.text
    done = await run_until(client, worker, r.json()["task_id"])
    task = sdk_task(done)  # chunks, segments, OCR words and configuration all validate
    assert task.status == "Succeeded", task.message
    assert task.output is not None and task.output.page_count == 1
    assert {s.segment_type.value for c in task.output.chunks for s in c.segments} >= {"Title"}
    table = done["configuration"]["segment_processing"]["table"]
    assert (table["format"], table["strategy"]) == ("Html", "Auto")
    # The SDK's PATCH: its tokenizer form again, with one real change.
    change = {"chunk_processing": {"tokenizer": {"String": "Cl100kBase"}, "target_length": 200}}
    r = await client.patch(f"/task/{task.task_id}/parse", json=change)
    assert r.status_code == 200, r.text
    assert r.json()["configuration"]["chunk_processing"]["tokenizer"] == "Cl100kBase"
    r = await client.patch(f"/task/{task.task_id}/parse", json=change)
    assert r.status_code == 400  # being reprocessed
    again = sdk_task(await run_until(client, worker, task.task_id))
    assert again.status == "Succeeded" and again.configuration.chunk_processing is not None
    r = await client.patch(f"/task/{task.task_id}/parse", json=change)
    assert r.status_code == 400 and "unchanged" in r.json()  # {"String": x} is x


@pytest.mark.parametrize(
    ("tokenizer", "stored"),
    [
        ("Word", "Word"),
        ({"Enum": "Word"}, "Word"),
        ({"Enum": "Cl100kBase"}, "Cl100kBase"),
        ({"String": "Cl100kBase"}, "Cl100kBase"),
    ],
)
async def test_tokenizer_plain_or_as_the_sdk_sends_it(env, settings, tokenizer, stored) -> None:  # type: ignore[no-untyped-def]
    from visionserve.store.db import session_scope
    from visionserve.surfaces.documents.records import DocumentTask

    client, _, _ = env
    r = await client.post(
        "/api/v1/task/parse",
        json={"file": b64(report_pdf(1)), "chunk_processing": {"tokenizer": tokenizer}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["configuration"]["chunk_processing"]["tokenizer"] == stored
    with session_scope(settings.database_url) as s:
        task = s.get(DocumentTask, r.json()["task_id"])
        assert task.configuration["chunk_processing"]["tokenizer"] == stored


@pytest.mark.parametrize(
    "tokenizer",
    [{"Enum": 5}, {"Name": "Word"}, {"Enum": "Word", "String": "Word"}, {}, ["Word"]],
)
async def test_other_tokenizer_shapes_are_422(env, tokenizer) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    r = await client.post(
        "/api/v1/task/parse",
        json={"file": b64(report_pdf(1)), "chunk_processing": {"tokenizer": tokenizer}},
    )
    assert r.status_code == 422, r.text
    assert r.json().startswith("chunk_processing.tokenizer: ")


async def test_a_custom_tokenizer_in_the_sdk_form_is_looked_up_by_name(env) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    r = await client.post(
        "/task/parse",
        json={
            "file": b64(report_pdf(1)),
            "chunk_processing": {"tokenizer": {"String": "acme/tiny-tokenizer"}},
        },
    )
    assert r.status_code == 400
    assert "tokenizers/acme/tiny-tokenizer/tokenizer.json" in r.json()


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_bare_key_or_bearer(env, prefix) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    key = client.headers["Authorization"].removeprefix("Bearer ")
    for header in (key, f"Bearer {key}", f"bearer  {key}", f" {key} "):
        r = await client.get(f"{prefix}/tasks", headers={"Authorization": header})
        assert r.status_code == 200, (header, r.text)
    for header in (f"Basic {key}", "Bearer", f"Token {key}", f"Bearer {key} extra"):
        r = await client.get(f"{prefix}/tasks", headers={"Authorization": header})
        assert r.status_code == 401 and isinstance(r.json(), str), header
        if not header.startswith("Bearer "):
            assert r.json().startswith("Malformed Authorization header"), header
    for header in ("vs_000000000000_nope", "", f"{key}x"):
        r = await client.get(f"{prefix}/tasks", headers={"Authorization": header})
        assert r.status_code == 401 and not r.json().startswith("Malformed"), header


async def test_task_url_follows_the_client_unless_public_url_is_set(env, settings) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    elsewhere = httpx.AsyncClient(
        transport=client._transport,
        base_url="http://docs.example:9000/documents",
        headers=dict(client.headers),
    )
    r = await elsewhere.post("/task/parse", json={"file": b64(report_pdf(1))})
    task_id = r.json()["task_id"]
    assert r.json()["task_url"] == f"http://docs.example:9000/documents/api/v1/task/{task_id}"
    settings.public_url = "https://vision.example.com"  # the operator knows better
    r = await elsewhere.get(f"/task/{task_id}")
    assert r.json()["task_url"] == f"https://vision.example.com/documents/api/v1/task/{task_id}"


async def test_oversized_bodies_are_413_strings(settings) -> None:  # type: ignore[no-untyped-def]
    settings.limits.max_request_bytes = 2048
    ctx = build_context(settings, handles={})
    app = create_app(ctx, [load_surface("documents")])
    key, _ = ctx.keys.create("docs")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000/documents"
    ) as client:
        for path in ("/api/v1/task/parse", "/task/parse"):
            r = await client.post(path, json={"file": "A" * 4096}, headers={"Authorization": key})
            assert r.status_code == 413 and isinstance(r.json(), str), r.text


# Every task operation: its non-200 statuses (and ``default``: a 500 or 503).
OPERATIONS = {
    ("post", "/task/parse"): {400, 401, 413, 422, 429},
    ("post", "/task"): {400, 401, 413, 422, 429},
    ("get", "/task/{task_id}"): {401, 404, 422, 429},
    ("patch", "/task/{task_id}/parse"): {400, 401, 404, 413, 422, 429},
    ("patch", "/task/{task_id}"): {400, 401, 404, 413, 422, 429},
    ("delete", "/task/{task_id}"): {400, 401, 404, 429},
    ("get", "/task/{task_id}/cancel"): {400, 401, 404, 429},
    ("get", "/tasks"): {400, 401, 422, 429},
    ("get", "/usage/monthly"): {401, 429},
    ("get", "/user"): {401, 429},
}


async def test_openapi_declares_every_status_with_the_string_body(env) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    spec = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    assert schemas["ErrorMessage"]["type"] == "string"
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    for prefix in PREFIXES:
        for (method, path), statuses in OPERATIONS.items():
            op = spec["paths"][prefix + path][method]
            declared = set(op["responses"])
            assert declared == {"200", "default", *map(str, statuses)}, (method, prefix + path)
            for status in declared - {"200"}:
                body = op["responses"][status]["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/ErrorMessage"}, (path, status)
                assert op["responses"][status]["description"]
    # The SDK's tokenizer forms are part of the request schema.
    forms = schemas["ChunkProcessing-Input"]["properties"]["tokenizer"]["anyOf"]
    assert [f.get("type") for f in forms] == ["string", "object", "object"]
    assert [next(iter(f.get("properties", {"": 0}))) for f in forms] == ["", "Enum", "String"]
