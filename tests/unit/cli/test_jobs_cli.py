"""``visionserve jobs list|show|cancel`` on a SQLite home, as an operator runs them."""

from __future__ import annotations

import threading
import time

import pytest
from typer.testing import CliRunner

from visionserve.cli import app
from visionserve.settings import get_settings
from visionserve.store.db import session_scope
from visionserve.store.queue import JobQueue, enqueue
from visionserve.store.records import WebhookDelivery


@pytest.fixture
def queue(tmp_path, monkeypatch) -> JobQueue:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VISIONSERVE_HOME", str(tmp_path))
    get_settings.cache_clear()
    settings = get_settings()
    from visionserve.store.db import engine_for

    engine_for(settings.database_url)
    return JobQueue(settings.database_url, settings.jobs)


def add(queue: JobQueue, surface: str, kind: str, **fields) -> str:  # type: ignore[no-untyped-def]
    with session_scope(queue.database_url) as s:
        job = enqueue(s, surface=surface, kind=kind, payload={}, settings=queue.settings, **fields)
        return job.id


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["jobs", *args])


def test_list_filters_by_surface_and_status_newest_first(queue) -> None:  # type: ignore[no-untyped-def]
    old = add(queue, "edit", "edit.b64")
    time.sleep(0.01)
    new = add(queue, "edit", "edit.batch")
    other = add(queue, "cutout", "cutout.shotgun")
    claimed = queue.claim("w1", ["edit.batch"])
    assert claimed is not None and claimed.id == new
    queue.heartbeat(new, "w1", 0.4, "4/10 images")

    rows = [line.split("\t") for line in run("list").stdout.splitlines()]
    assert [r[0] for r in rows] == [other, new, old]
    assert rows[1][1:5] == ["edit", "edit.batch", "processing", " 40%"]
    assert rows[1][-1] == "4/10 images"
    edit_rows = run("list", "--surface", "edit").stdout.splitlines()
    assert [r.split("\t")[0] for r in edit_rows] == [new, old]
    queued = run("list", "--surface", "edit", "--status", "queued").stdout.splitlines()
    assert [r.split("\t")[0] for r in queued] == [old]
    assert len(run("list", "--limit", "1").stdout.splitlines()) == 1
    bad = run("list", "--status", "running")
    assert bad.exit_code == 2 and "--status must be one of" in bad.stderr
    assert run("list", "--limit", "0").exit_code != 0
    assert run("list", "--surface", "inspect").stderr.strip() == "no jobs"


def test_show_prints_status_progress_message_metrics_and_error(queue) -> None:  # type: ignore[no-untyped-def]
    job_id = add(queue, "inspect", "inspect.train")
    queue.claim("w1")
    queue.heartbeat(job_id, "w1", 0.5, "train", {"epoch": 3, "loss": 0.25})
    out = run("show", job_id).stdout
    assert f"job       {job_id}" in out
    assert "status    processing" in out
    assert "progress  [###############...............]  50%" in out
    assert "message   train" in out
    assert 'metrics   {"epoch": 3, "loss": 0.25}' in out

    from visionserve.errors import PublicFailure

    queue.fail(
        job_id,
        "w1",
        PublicFailure("Training failed: no images", "training_failed", "invalid_input", False),
    )
    out = run("show", job_id).stdout
    assert (
        "status    failed" in out
        and "error     Training failed: no images (training_failed)" in out
    )
    missing = run("show", "nope")
    assert missing.exit_code == 1 and "job nope not found" in missing.stderr


def test_follow_draws_progress_until_the_job_ends(queue) -> None:  # type: ignore[no-untyped-def]
    job_id = add(queue, "edit", "edit.batch")

    def work() -> None:
        time.sleep(0.3)
        queue.claim("w1")
        for done in range(1, 5):
            queue.heartbeat(job_id, "w1", done / 4, f"{done}/4 images")
            time.sleep(0.25)
        queue.complete(job_id, "w1", {"processed": 4})

    worker = threading.Thread(target=work)
    worker.start()
    result = run("show", job_id, "--follow", "--interval", "0.05")
    worker.join()
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    bars = [line for line in lines if line.startswith("[")]
    # One line per change (piped, not a terminal): queued, each step, then completed.
    assert bars[0].startswith("[..............................]   0%  queued")
    assert any("  50%  processing  2/4 images" in b for b in bars)
    assert bars[-1].startswith("[##############################] 100%  completed")
    assert len(bars) == len(set(bars)) and 5 <= len(bars) <= 7
    assert "status    completed" in lines


def test_follow_exits_1_when_the_job_fails(queue) -> None:  # type: ignore[no-untyped-def]
    job_id = add(queue, "cutout", "cutout.shotgun")
    queue.claim("w1")
    from visionserve.errors import PublicFailure

    queue.fail(job_id, "w1", PublicFailure("bad image", "bad_image", "invalid_input", False))
    result = run("show", job_id, "--follow")
    assert result.exit_code == 1 and "status    failed" in result.stdout


def test_cancel_through_the_queue_with_the_webhook(queue) -> None:  # type: ignore[no-untyped-def]
    queued = add(queue, "edit", "edit.b64", webhook_url="https://example.com/hook")
    running = add(queue, "cutout", "cutout.shotgun")
    assert queue.claim("w1", ["cutout.shotgun"]) is not None

    result = run("cancel", queued)
    assert result.exit_code == 0 and result.stdout.strip() == f"cancelled {queued}"
    assert queue.get(queued).status == "cancelled"
    # The terminal hook ran as in the API: the job's webhook is in the outbox.
    with session_scope(queue.database_url) as s:
        (delivery,) = s.query(WebhookDelivery).all()
        assert delivery.event_id == f"job.cancelled:{queued}"

    result = run("cancel", running)
    assert result.exit_code == 0 and "cancel requested" in result.stdout
    job = queue.get(running)
    assert job.status == "processing" and job.cancel_requested
    assert queue.heartbeat(running, "w1").cancel_requested  # what its worker sees next

    again = run("cancel", queued)
    assert again.exit_code == 1 and "already cancelled" in again.stderr
    assert run("cancel", "nope").exit_code == 1


def test_cancel_refuses_a_documents_job(queue) -> None:  # type: ignore[no-untyped-def]
    with session_scope(queue.database_url) as s:
        job = enqueue(
            s,
            surface="documents",
            kind="documents.process",
            payload={"task_id": "t-1"},
            settings=queue.settings,
        )
    result = run("cancel", job.id)
    assert result.exit_code == 1 and "/documents/api/v1/task/t-1/cancel" in result.stderr
    assert queue.get(job.id).status == "queued"
