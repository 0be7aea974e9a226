"""documents on a real local Ray Serve: task API → job worker → the page-parallel graph."""

from __future__ import annotations

import base64
import time

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
