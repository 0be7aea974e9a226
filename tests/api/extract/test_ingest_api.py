"""extract ingest and jobs over HTTP: every input, sync and queued, formats, webhooks, errors."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from xml.etree import ElementTree as ET

import pytest
import yaml

from tests.api.extract.conftest import SCHEMA, TRUTH, Env, b64, invoice_pdf, rendered
from visionserve.platform.webhooks import SIGNATURE_HEADER, verify

# Records on both backends: the database_url fixture runs SQLite and PostgreSQL.


def assert_truth(result: dict) -> None:
    assert result == TRUTH, result


async def test_base64_pdf_answers_sync_with_grounded_result(env: Env) -> None:
    pid = await env.pattern()
    async with env.worker():
        r = await env.client.post(
            f"/patterns/{pid}/ingest",
            json={"image_base64": b64(invoice_pdf()), "metadata": {"order": 7}},
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    job = body["data"]
    assert job["status"] == "completed" and job["approach"] == "sync"
    assert_truth(job["result"])
    assert 0 < job["confidence"] <= 1 and job["processing_time_ms"] > 0
    assert job["engine"] == "local"
    meta = job["field_metadata"]["invoice_number"]
    assert meta["page"] == 1 and "INV-2024-001" in meta["source_text"]
    x0, y0, x1, y1 = meta["bbox"]
    assert 0 <= x0 < x1 and 0 <= y0 < y1
    got = (await env.client.get(f"/jobs/{job['job_id']}")).json()["data"]
    assert got["metadata"] == {"order": 7} and got["result"] == job["result"]
    assert got["created_at"].endswith("Z") and got["completed_at"].endswith("Z")
    stats = (await env.client.get(f"/patterns/{pid}")).json()["data"]["statistics"]
    assert stats["total_requests"] == 1 and stats["success_rate"] == 100.0
    assert stats["avg_processing_time_ms"] == job["processing_time_ms"]
    assert stats["usage_units"] == 1


async def test_queued_when_no_worker_then_completed(build_env) -> None:  # type: ignore[no-untyped-def]
    env = build_env(sync_window_s=0.3)
    pid = await env.pattern()
    r = await env.client.post(f"/patterns/{pid}/ingest", json={"image_base64": b64(invoice_pdf())})
    assert r.status_code == 202, r.text
    queued = r.json()["data"]
    assert queued["status"] == "queued" and queued["approach"] == "queued"
    assert queued["message"] == "Job queued for background processing"
    assert queued["estimated_completion_time"].endswith("Z")
    job = (await env.client.get(f"/jobs/{queued['job_id']}")).json()["data"]
    assert job == {
        "job_id": queued["job_id"],
        "pattern_id": pid,
        "status": "queued",
        "created_at": job["created_at"],
        "metadata": None,
        "priority": "normal",
        "page_count": 1,
    }
    async with env.worker():
        done = await env.finished(queued["job_id"])
    assert done["success"] is True and done["data"]["status"] == "completed"
    assert_truth(done["data"]["result"])


async def test_scanned_png_url_and_multipart_jpeg(env: Env, http_file_server) -> None:  # type: ignore[no-untyped-def]
    pid = await env.pattern()
    png = rendered(invoice_pdf(), "png")
    url = http_file_server({"/invoice.png": png})["/invoice.png"]
    async with env.worker():
        r = await env.client.post(f"/patterns/{pid}/ingest", json={"image_url": url})
        assert r.status_code == 200, r.text
        by_url = r.json()["data"]
        files = {"file": ("invoice.jpg", rendered(invoice_pdf(), "jpeg"), "image/jpeg")}
        r = await env.client.post(
            f"/patterns/{pid}/ingest",
            files=files,
            data={"metadata": json.dumps({"src": "upload"}), "priority": "high"},
        )
        assert r.status_code == 200, r.text
        by_file = r.json()["data"]
    for job in (by_url, by_file):
        assert job["status"] == "completed"
        assert job["result"]["invoice_number"] == "INV-2024-001"
        assert job["result"]["total_amount"] == 1942.92
        assert job["result"]["invoice_date"] == "2024-01-15"
    got = (await env.client.get(f"/jobs/{by_file['job_id']}")).json()["data"]
    assert got["metadata"] == {"src": "upload"} and got["priority"] == "high"
    stats = (await env.client.get(f"/patterns/{pid}")).json()["data"]["statistics"]
    assert stats["usage_units"] == 3  # one page normal + one page at high priority (x2)


@pytest.mark.parametrize("fmt", ["yaml", "xml", "csv", "text"])
async def test_output_formats(env: Env, fmt: str) -> None:
    schema = {**SCHEMA, "line_items": [{"description": "string", "amount": "number"}]}
    pid = await env.pattern(schema=schema, output_format=fmt)
    async with env.worker():
        r = await env.client.post(
            f"/patterns/{pid}/ingest", json={"image_base64": b64(invoice_pdf())}
        )
    job = r.json()["data"]
    assert job["status"] == "completed", job
    text = job["result"]
    assert isinstance(text, str)
    if fmt == "yaml":
        parsed = yaml.safe_load(text)
        assert parsed["invoice_number"] == "INV-2024-001" and parsed["total_amount"] == 1942.92
    elif fmt == "xml":
        root = ET.fromstring(text)
        assert root.tag == "result" and root.findtext("invoice_number") == "INV-2024-001"
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        items = [r for r in rows if r["line_items.description"]]
        assert len(rows) >= 1 and all(r["invoice_number"] == "INV-2024-001" for r in rows)
        assert items, rows
    else:
        assert "invoice_number: INV-2024-001" in text.splitlines()


async def test_high_priority_is_claimed_first(build_env) -> None:  # type: ignore[no-untyped-def]
    env = build_env(sync_window_s=0)
    pid = await env.pattern()
    ids = []
    for priority in ("normal", "normal", "high"):
        r = await env.client.post(
            f"/patterns/{pid}/ingest",
            json={"image_base64": b64(invoice_pdf()), "priority": priority},
        )
        assert r.status_code == 202
        ids.append(r.json()["data"]["job_id"])
    claimed = env.ctx.queue.claim("test-worker")
    assert claimed is not None and claimed.id == ids[2]
    assert env.ctx.queue.claim("test-worker").id == ids[0]  # type: ignore[union-attr]


async def test_webhooks_receive_signed_events(env: Env, receiver) -> None:  # type: ignore[no-untyped-def]
    from visionserve.platform.webhooks import Deliverer

    hook = (
        await env.client.post(
            "/webhooks",
            json={"url": receiver.url, "events": ["job.completed"], "secret": "s3cret-key"},
        )
    ).json()["data"]
    failed_only = (
        await env.client.post(
            "/webhooks", json={"url": receiver.url + "/failed", "events": ["job.failed"]}
        )
    ).json()["data"]
    pid = await env.pattern(webhook_url=receiver.url + "/pattern")
    deliverer = Deliverer(
        env.ctx.settings.database_url, env.ctx.settings.webhooks, env.ctx.egress, worker_id="t"
    )
    loop = asyncio.create_task(deliverer.run())
    try:
        async with env.worker():
            r = await env.client.post(
                f"/patterns/{pid}/ingest", json={"image_base64": b64(invoice_pdf())}
            )
        job = r.json()["data"]
        got = await asyncio.to_thread(receiver.wait_for, 2)
    finally:
        deliverer.stop()
        await loop
    paths = sorted(g.path for g in got)
    assert paths == ["/hook", "/hook/pattern"], paths
    signed = next(g for g in got if g.path == "/hook")
    assert verify(hook["secret"], signed.headers[SIGNATURE_HEADER], signed.body)
    event = json.loads(signed.body)
    assert event["event"] == "job.completed" and event["data"]["job_id"] == job["job_id"]
    assert event["data"]["result"] == job["result"]
    assert signed.headers["X-VisionServe-Event-Id"] == f"extract.job.completed:{job['job_id']}"
    assert failed_only["webhook_id"]  # subscribed to job.failed only: got nothing


async def test_idempotent_ingest_replays(build_env) -> None:  # type: ignore[no-untyped-def]
    env = build_env(sync_window_s=0)
    pid = await env.pattern()
    headers = {"Idempotency-Key": "unique-request-id-123"}
    body = {"image_base64": b64(invoice_pdf())}
    first = await env.client.post(f"/patterns/{pid}/ingest", json=body, headers=headers)
    again = await env.client.post(f"/patterns/{pid}/ingest", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    listed = (await env.client.get("/jobs")).json()["data"]
    assert listed["pagination"]["total_count"] == 1
    other = await env.client.post(
        f"/patterns/{pid}/ingest",
        json={"image_base64": b64(rendered(invoice_pdf()))},
        headers=headers,
    )
    assert other.status_code in (409, 422) and other.json()["success"] is False


async def test_jobs_list_filters_and_paginates(build_env) -> None:  # type: ignore[no-untyped-def]
    env = build_env(sync_window_s=0)
    a, b = await env.pattern(name="a"), await env.pattern(name="b")
    for pid in (a, a, b):
        await env.client.post(f"/patterns/{pid}/ingest", json={"image_base64": b64(invoice_pdf())})
    page = (await env.client.get("/jobs", params={"limit": 2})).json()["data"]
    assert page["pagination"] == {"current_page": 1, "total_pages": 2, "total_count": 3}
    assert set(page["jobs"][0]) == {"job_id", "pattern_id", "status", "created_at"}
    only_a = (await env.client.get("/jobs", params={"pattern_id": a})).json()["data"]
    assert {j["pattern_id"] for j in only_a["jobs"]} == {a} and len(only_a["jobs"]) == 2
    done = (await env.client.get("/jobs", params={"status": "completed"})).json()["data"]
    assert done["jobs"] == []
    r = await env.client.get("/jobs", params={"status": "exploded"})
    assert r.status_code == 400
    assert (await env.client.get("/jobs/nope")).json()["error"]["code"] == "not_found"


async def test_bad_input_is_refused_at_ingest(env: Env) -> None:
    import pymupdf

    pid = await env.pattern()
    c = env.client
    url = f"/patterns/{pid}/ingest"
    encrypted = pymupdf.open(stream=invoice_pdf(), filetype="pdf").tobytes(
        encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="pw", owner_pw="pw"
    )
    cases = [
        ({"image_base64": "not base64!!"}, "invalid_image"),
        ({"image_base64": b64(b"GIF89a" + bytes(100))}, "invalid_image"),  # unsupported type
        ({"image_base64": b64(b"\x89PNG\r\n\x1a\n" + bytes(50))}, "invalid_image"),  # truncated
        ({"image_base64": b64(b"%PDF-1.7\n%%EOF")}, "invalid_image"),  # no pages
        ({"image_base64": b64(encrypted)}, "encrypted_pdf"),  # the client can act on it
        ({"image_base64": b64(invoice_pdf(25))}, "too_many_pages"),
        ({"image_url": "http://169.254.169.254/latest/meta-data"}, "url_not_allowed"),
        ({"image_url": "http://127.0.0.1:9/nothing.png"}, "invalid_image"),
        ({}, "invalid_request"),
        (
            {"image_base64": b64(invoice_pdf()), "image_url": "http://127.0.0.1/x"},
            "invalid_request",
        ),
        ({"image_base64": b64(invoice_pdf()), "priority": "urgent"}, "invalid_request"),
    ]
    for body, code in cases:
        r = await c.post(url, json=body)
        assert 400 <= r.status_code < 500, (body.keys(), r.text)
        assert r.json()["success"] is False
        if code:
            assert r.json()["error"]["code"] == code, (code, r.json())
    r = await c.post(url, content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    r = await c.post(url, files={"other": ("x.txt", b"x")})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    assert (await c.get("/jobs")).json()["data"]["pagination"]["total_count"] == 0
    r = await c.post("/patterns/pat_missing/ingest", json={"image_base64": b64(invoice_pdf())})
    assert r.status_code == 404


async def test_draft_and_archived_patterns_refuse_ingest(env: Env) -> None:
    for status in ("draft", "archived"):
        pid = await env.pattern(status=status)
        r = await env.client.post(
            f"/patterns/{pid}/ingest", json={"image_base64": b64(invoice_pdf())}
        )
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["code"] == "pattern_inactive" and status in error["message"]


async def test_blank_page_is_a_failed_job_with_a_public_code(env: Env) -> None:
    from PIL import Image

    blank = io.BytesIO()
    Image.new("RGB", (800, 1000), "white").save(blank, format="PNG")
    pid = await env.pattern()
    async with env.worker():
        r = await env.client.post(
            f"/patterns/{pid}/ingest", json={"image_base64": b64(blank.getvalue())}
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is False
    job = body["data"]
    assert job["status"] == "failed" and job["failed_at"].endswith("Z")
    assert job["error"]["code"] == "no_text" and "not a document" in job["error"]["message"]
    stats = (await env.client.get(f"/patterns/{pid}")).json()["data"]["statistics"]
    assert stats["success_rate"] == 0.0 and stats["total_requests"] == 1


async def test_a_job_the_platform_gave_up_on_reads_as_failed(build_env) -> None:  # type: ignore[no-untyped-def]
    from visionserve.errors import PublicFailure

    env = build_env(sync_window_s=0)
    pid = await env.pattern()
    r = await env.client.post(f"/patterns/{pid}/ingest", json={"image_base64": b64(invoice_pdf())})
    job_id = r.json()["data"]["job_id"]
    claimed = env.ctx.queue.claim("doomed-worker")
    assert claimed is not None and claimed.id == job_id
    lost = PublicFailure("worker lost 3 times; giving up", "worker_lost", "internal", False)
    assert env.ctx.queue.fail(job_id, "doomed-worker", lost)
    body = (await env.client.get(f"/jobs/{job_id}")).json()
    assert body["success"] is False
    assert body["data"]["status"] == "failed" and body["data"]["failed_at"].endswith("Z")
    assert body["data"]["error"] == {
        "code": "worker_lost",
        "message": "worker lost 3 times; giving up",
    }


async def test_vlm_engine_through_the_api(build_env) -> None:  # type: ignore[no-untyped-def]
    from tests.llm_stub import openai_stub
    from visionserve.settings import LlmSettings

    with openai_stub(lambda body: json.dumps(TRUTH)) as (url, seen):
        env = build_env(sync_window_s=20.0, vlm=LlmSettings(base_url=url, model="qwen2.5-vl"))
        auto = await env.pattern()  # auto: the VLM, since one is configured
        local = await env.pattern(engine="local")
        async with env.worker():
            by_vlm = await env.client.post(
                f"/patterns/{auto}/ingest", json={"image_base64": b64(invoice_pdf())}
            )
            by_local = await env.client.post(
                f"/patterns/{local}/ingest", json={"image_base64": b64(invoice_pdf())}
            )
    job = by_vlm.json()["data"]
    assert job["status"] == "completed" and job["engine"] == "vlm"
    assert_truth(job["result"])
    assert job["field_metadata"]["invoice_number"]["page"] == 1
    assert len(seen) == 1 and seen[0]["body"]["response_format"]["json_schema"]["strict"] is True
    assert by_local.json()["data"]["engine"] == "local"
    pattern = (await env.client.get(f"/patterns/{auto}")).json()["data"]
    assert pattern["engine"] == "auto"


async def test_vlm_errors_fail_the_job_with_a_public_message(build_env) -> None:  # type: ignore[no-untyped-def]
    from tests.llm_stub import openai_stub
    from visionserve.settings import LlmSettings

    with openai_stub() as (url, _):
        env = build_env(sync_window_s=20.0, vlm=LlmSettings(base_url=url, model="broken"))
        pid = await env.pattern(engine="vlm")
        async with env.worker():
            r = await env.client.post(
                f"/patterns/{pid}/ingest", json={"image_base64": b64(invoice_pdf())}
            )
    body = r.json()
    assert body["success"] is False and body["data"]["status"] == "failed"
    assert body["data"]["error"] == {
        "code": "extraction_failed",
        "message": "LLM endpoint answered HTTP 500",
    }
