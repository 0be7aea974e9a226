"""documents on a real local Ray Serve: task API → job worker → the page-parallel graph."""

from __future__ import annotations

import base64
import inspect
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.documents_fixtures import TABLE, TITLE, report_pdf, scanned_png

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def wait(client: httpx.Client, task_id: str) -> dict:  # type: ignore[type-arg]
    deadline = time.time() + 180
    while time.time() < deadline:
        task = client.get(f"/api/v1/task/{task_id}").json()
        if task["status"] in ("Succeeded", "Failed"):
            return task
        time.sleep(0.5)
    raise AssertionError(f"task {task_id} did not finish: {task['status']}")


@pytest.fixture
def client(serve_cluster):  # type: ignore[no-untyped-def]
    from visionserve.store.keys import KeyStore

    key, _ = KeyStore(serve_cluster.database_url).create("docs-serve")
    with httpx.Client(
        base_url=f"{serve_cluster.base_url}/documents",
        timeout=60,
        headers={"Authorization": f"Bearer {key}"},
    ) as c:
        yield c


def test_digital_pdf_through_serve(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/api/v1/task/parse",
        json={"file": base64.b64encode(report_pdf(3)).decode(), "file_name": "report.pdf"},
    )
    assert r.status_code == 200, r.text
    task = wait(client, r.json()["task_id"])
    assert task["status"] == "Succeeded", task["message"]
    assert task["output"]["page_count"] == 3
    segs = [s for c in task["output"]["chunks"] for s in c["segments"]]
    assert {s["page_number"] for s in segs} == {1, 2, 3}
    assert [s["text"] for s in segs if s["segment_type"] == "Title"] == [TITLE]
    tables = [s for s in segs if s["segment_type"] == "Table"]
    assert len(tables) == 3 and all(f">{TABLE[1][2]}<" in t["html"] for t in tables)


def test_scanned_image_is_ocred(client) -> None:  # type: ignore[no-untyped-def]
    png = scanned_png(report_pdf(1))
    r = client.post(
        "/api/v1/task/parse",
        json={"file": base64.b64encode(png).decode(), "segmentation_strategy": "LayoutAnalysis"},
    )
    task = wait(client, r.json()["task_id"])
    assert task["status"] == "Succeeded", task["message"]
    text = " ".join(s["text"] for c in task["output"]["chunks"] for s in c["segments"])
    assert "Quarterly Report on Widget Sales" in text
    assert all(cell in text for cell in TABLE[1])
    words = [w for c in task["output"]["chunks"] for s in c["segments"] for w in s["ocr"]]
    assert words and all(0 <= w["confidence"] <= 1 for w in words)


# --- the official chunkr SDK, changed only in its base URL ------------------------------


def settled(task: Any, result: Any) -> Any:
    """``TaskResponse.update()`` / ``.cancel()`` of chunkr-ai 0.3.7, finished.

    Both send their request, then return ``self.poll()`` from inside the SDK's own event
    loop, where its ``@anywhere`` wrapper hands back a coroutine: called synchronously
    they return that coroutine, never awaited (an SDK bug, client-side only; the client
    methods ``Chunkr.update`` and ``Chunkr.cancel_task`` are not affected). Poll as the
    SDK meant to.
    """
    if inspect.iscoroutine(result):
        result.close()
        return task.poll()
    return result


def sdk_flows(url: str, key: str, work: str) -> None:
    """chunkr-ai 0.3.7's flows against ``url``; what it saw goes to ``<work>/seen.json``.

    Run in a child process: every SDK call applies ``nest_asyncio``, which patches
    asyncio for the whole process (and would for the rest of the test session). An SDK
    exception, a pydantic ValidationError of its response models among them, fails it.
    """
    from chunkr_ai import Chunkr
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
        TokenizerType,
    )

    pdf = Path(work) / "report.pdf"
    pdf.write_bytes(report_pdf(2))
    seen: dict[str, Any] = {}

    def types(task: Any) -> list[str]:
        return sorted({s.segment_type.value for c in task.output.chunks for s in c.segments})

    chunkr = Chunkr(url=url, api_key=key)
    config = Configuration(
        ocr_strategy=OcrStrategy.AUTO,
        segmentation_strategy=SegmentationStrategy.LAYOUT_ANALYSIS,
        chunk_processing=ChunkProcessing(target_length=256, tokenizer=Tokenizer.CL100K_BASE),
        segment_processing=SegmentProcessing(
            table=GenerationConfig(format=SegmentFormat.HTML, strategy=GenerationStrategy.AUTO),
            page_header=GenerationConfig(strategy=GenerationStrategy.IGNORE),
        ),
    )
    # upload: POST {url}/task/parse, then polls task_url until the task is done.
    task = chunkr.upload(pdf, config)
    seen["upload"] = {
        "status": task.status.value,
        "message": task.message,
        "file_name": task.output.file_name,
        "page_count": task.output.page_count,
        "types": types(task),
        "tokenizer": str(task.configuration.chunk_processing.tokenizer),
        "table_format": task.configuration.segment_processing.table.format.value,
        "html": task.html(),
    }
    seen["poll"] = task.poll().status.value  # finished: one GET of task_url
    full = chunkr.get_task(task.task_id)  # GET {url}/task/{id}
    light = chunkr.get_task(task.task_id, include_chunks=False)
    seen["get_task"] = {
        "chunks": len(full.output.chunks),
        "same": full.output.chunks == task.output.chunks,
        "light_chunks": len(light.output.chunks),
    }
    # The 0.1 SDK's base: {url}/api/v1/task/{id} is the same task.
    old_base = Chunkr(url=f"{url}/api/v1", api_key=key)
    seen["old_base"] = old_base.get_task(task.task_id, include_chunks=False).status.value
    old_base.close()

    # update: PATCH {url}/task/{id}/parse, then polls; then the task's own update,
    # PATCH {task_url}/parse, with the tokenizer in the SDK's other form.
    paged = chunkr.update(
        task.task_id, Configuration(segmentation_strategy=SegmentationStrategy.PAGE)
    )
    seen["update"] = {"status": paged.status.value, "types": types(paged)}
    again = settled(
        paged,
        paged.update(
            Configuration(
                segmentation_strategy=SegmentationStrategy.LAYOUT_ANALYSIS,
                chunk_processing=ChunkProcessing(tokenizer=TokenizerType(string_value="Word")),
            )
        ),
    )
    seen["task_update"] = {
        "status": again.status.value,
        "types": types(again),
        "tokenizer": str(again.configuration.chunk_processing.tokenizer),
    }

    # cancel: only a task still queued can be; sleepers fill the job workers first
    # (2 replicas at most, 2 jobs each) so the next task waits behind them.
    with httpx.Client(
        base_url=url.rsplit("/", 1)[0], headers={"Authorization": key}, timeout=30
    ) as http:
        for _ in range(6):
            r = http.post("/sample/jobs", json={"trace": f"{work}/sleep", "steps": 20})
            r.raise_for_status()
    queued = chunkr.create_task(pdf, config)  # POST {url}/task/parse, no polling
    cancelled = settled(queued, queued.cancel())  # GET {task_url}/cancel, then polls
    other = chunkr.create_task(pdf)
    chunkr.cancel_task(other.task_id)  # GET {url}/task/{id}/cancel
    seen["cancel"] = [
        cancelled.status.value,
        chunkr.get_task(other.task_id).status.value,
    ]

    # delete: DELETE {task_url}, and DELETE {url}/task/{id}.
    cancelled.delete()
    for task_id in (task.task_id, other.task_id):
        chunkr.delete_task(task_id)
    gone = []
    for task_id in (task.task_id, queued.task_id, other.task_id):
        try:
            chunkr.get_task(task_id)
        except httpx.HTTPStatusError as exc:  # the one error expected: 404
            gone.append([exc.response.status_code, exc.response.json()])
    seen["delete"] = gone
    chunkr.close()
    (Path(work) / "seen.json").write_text(json.dumps(seen))


def test_the_chunkr_sdk_works_by_changing_only_its_base_url(serve_cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from visionserve.store.keys import KeyStore

    # Its own rate limit: the sleepers' sample surface allows 5 a minute otherwise.
    key, _ = KeyStore(serve_cluster.database_url).create("chunkr-sdk", rate_limit_per_minute=600)
    url = f"{serve_cluster.base_url}/documents"
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tests.serve.test_documents_serve import sdk_flows; "
            "sdk_flows(*sys.argv[1:])",
            url,
            key,
            str(tmp_path),
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=480,  # the SDK polls (and retries a connection error) forever
    )
    assert child.returncode == 0, child.stderr[-6000:]
    assert "retrying" not in child.stdout, child.stdout[-2000:]  # task_url was reachable
    seen = json.loads((tmp_path / "seen.json").read_text())

    upload = seen["upload"]
    assert upload["status"] == "Succeeded", upload["message"]
    assert (upload["file_name"], upload["page_count"]) == ("report.pdf", 2)
    assert {"Title", "SectionHeader", "Table"} <= set(upload["types"]), upload["types"]
    assert upload["tokenizer"] == "enum:Cl100kBase" and upload["table_format"] == "Html"
    assert TITLE in upload["html"] and f">{TABLE[1][2]}<" in upload["html"]
    assert seen["poll"] == "Succeeded" and seen["old_base"] == "Succeeded"
    assert seen["get_task"]["chunks"] > 0 and seen["get_task"]["same"]
    assert seen["get_task"]["light_chunks"] == 0
    assert seen["update"] == {"status": "Succeeded", "types": ["Page"]}
    assert seen["task_update"]["status"] == "Succeeded"
    assert "Title" in seen["task_update"]["types"]
    assert seen["task_update"]["tokenizer"] == "enum:Word"  # stored as the plain name
    assert seen["cancel"] == ["Cancelled", "Cancelled"]
    assert seen["delete"] == [[404, "Task not found"]] * 3
