"""extract on a real local Ray Serve: ingress → job worker → extract graph → OCR + engine."""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest
import yaml

from tests.api.extract.conftest import SCHEMA, TRUTH, invoice_pdf, rendered
from tests.extract_http import serve_files
from visionserve.platform.webhooks import SIGNATURE_HEADER, verify

pytestmark = [pytest.mark.ray, pytest.mark.slow]

LINE_ITEMS = {**SCHEMA, "line_items": [{"description": "string", "amount": "number"}]}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def scanned_pdf(pages: int) -> bytes:
    """A PDF of page images only (no text layer): every page goes through OCR."""
    import pymupdf

    png = rendered(invoice_pdf(), "png", dpi=120)
    doc = pymupdf.open()
    for _ in range(pages):
        page = doc.new_page(width=595, height=842)
        page.insert_image(page.rect, stream=png)
    data = bytes(doc.tobytes())
    doc.close()
    return data


def wait(client: httpx.Client, job_id: str, timeout_s: float = 240) -> dict[str, Any]:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        data = client.get(f"/jobs/{job_id}").json()["data"]
        if data["status"] in ("completed", "failed"):
            return dict(data)
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish: {data}")


@pytest.fixture
def client(serve_cluster):  # type: ignore[no-untyped-def]
    from visionserve.store.keys import KeyStore

    key, _ = KeyStore(serve_cluster.database_url).create("extract-serve")
    with httpx.Client(
        base_url=f"{serve_cluster.base_url}/extract/api",
        timeout=120,
        headers={"Authorization": f"Bearer {key}"},
    ) as c:
        yield c


def test_extract_end_to_end_through_serve(client: httpx.Client, receiver) -> None:  # type: ignore[no-untyped-def]
    hook = client.post(
        "/webhooks",
        json={"url": receiver.url, "events": ["job.completed"], "secret": "serve-secret"},
    ).json()["data"]
    r = client.post(
        "/patterns",
        json={"name": "Invoices", "schema": LINE_ITEMS, "instructions": "Supplier invoices"},
    )
    assert r.status_code == 201, r.text
    pid = r.json()["data"]["pattern_id"]
    ingest = f"/patterns/{pid}/ingest"

    # Sync: on a warm cluster a digital PDF finishes within the sync window; 200 with the
    # result. (The first request through fresh handles may take longer: a warm-up.)
    r = client.post(ingest, json={"image_base64": b64(invoice_pdf())})
    assert r.status_code in (200, 202), r.text
    assert wait(client, r.json()["data"]["job_id"])["status"] == "completed"
    r = client.post(ingest, json={"image_base64": b64(invoice_pdf()), "metadata": {"n": 1}})
    assert r.status_code == 200, r.text
    sync = r.json()["data"]
    assert sync["status"] == "completed" and sync["approach"] == "sync"
    assert {k: sync["result"][k] for k in TRUTH} == TRUTH
    assert sync["result"]["line_items"], sync["result"]
    assert r.headers["X-Request-ID"] and r.headers["X-RateLimit-Limit"]

    # By URL (a scan: the shared OCR deployment reads it), with an Idempotency-Key.
    with serve_files({"/scan.png": rendered(invoice_pdf(), "png")}) as urls:
        headers = {"Idempotency-Key": "serve-url-1"}
        first = client.post(ingest, json={"image_url": urls["/scan.png"]}, headers=headers)
        replay = client.post(ingest, json={"image_url": urls["/scan.png"]}, headers=headers)
    assert first.status_code in (200, 202), first.text
    assert replay.status_code == first.status_code and replay.json() == first.json()
    by_url = wait(client, first.json()["data"]["job_id"])
    assert by_url["result"]["invoice_number"] == "INV-2024-001", by_url
    assert by_url["result"]["total_amount"] == 1942.92

    # Multipart upload, high priority.
    files = {"file": ("scan.jpg", rendered(invoice_pdf(), "jpeg"), "image/jpeg")}
    r = client.post(ingest, files=files, data={"priority": "high"})
    assert r.status_code in (200, 202), r.text
    by_file = wait(client, r.json()["data"]["job_id"])
    assert by_file["result"]["invoice_date"] == "2024-01-15" and by_file["priority"] == "high"

    # Queued: twenty scanned pages take longer than the sync window (1.5 s in the test
    # cluster's settings); 202, then completed.
    r = client.post(ingest, json={"image_base64": b64(scanned_pdf(20))})
    assert r.status_code == 202, r.text
    queued = r.json()["data"]
    assert queued["status"] == "queued" and queued["estimated_completion_time"].endswith("Z")
    seen_processing = False
    deadline = time.time() + 300
    while time.time() < deadline:
        data = client.get(f"/jobs/{queued['job_id']}").json()["data"]
        seen_processing |= data["status"] == "processing" and isinstance(data["progress"], int)
        if data["status"] in ("completed", "failed"):
            break
        time.sleep(0.3)
    assert data["status"] == "completed", data
    assert data["page_count"] == 20 and data["result"]["invoice_number"] == "INV-2024-001"
    assert seen_processing

    # Every output format.
    for fmt in ("yaml", "xml", "csv", "text"):
        assert client.patch(f"/patterns/{pid}", json={"output_format": fmt}).status_code == 200
        r = client.post(ingest, json={"image_base64": b64(invoice_pdf())})
        text = wait(client, r.json()["data"]["job_id"])["result"]
        assert isinstance(text, str), text
        if fmt == "yaml":
            assert yaml.safe_load(text)["invoice_number"] == "INV-2024-001"
        elif fmt == "xml":
            assert ET.fromstring(text).findtext("total_amount") == "1942.92"
        elif fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(text)))
            assert rows and all(row["invoice_number"] == "INV-2024-001" for row in rows)
        else:
            assert "invoice_number: INV-2024-001" in text

    # Jobs: listed and filtered; the pattern's statistics come from them.
    listed = client.get("/jobs", params={"pattern_id": pid, "limit": 100}).json()["data"]
    assert listed["pagination"]["total_count"] == 9
    done = client.get("/jobs", params={"status": "completed", "limit": 100}).json()["data"]
    assert done["pagination"]["total_count"] == 9
    stats = client.get(f"/patterns/{pid}").json()["data"]["statistics"]
    assert stats["total_requests"] == 9 and stats["success_rate"] == 100.0
    assert stats["usage_units"] == 2 + 1 + 2 + 20 + 4

    # The registered webhook got a signed job.completed for each job.
    got = receiver.wait_for(9, timeout=60)
    assert len(got) >= 9
    for delivery in got:
        assert verify(hook["secret"], delivery.headers[SIGNATURE_HEADER], delivery.body)
    events = [json.loads(d.body) for d in got]
    assert {e["event"] for e in events} == {"job.completed"}
    assert queued["job_id"] in {e["data"]["job_id"] for e in events}
