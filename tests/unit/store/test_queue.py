"""The durable queue on SQLite and PostgreSQL: claim, lease, heartbeat, finish once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from visionserve.errors import Conflict, NotFound, PublicFailure
from visionserve.platform.worker import terminal_webhook
from visionserve.store.db import session_scope
from visionserve.store.queue import JobQueue, enqueue
from visionserve.store.records import Job, WebhookDelivery


def add_job(settings, **kw) -> str:  # type: ignore[no-untyped-def]
    with session_scope(settings.database_url) as s:
        return enqueue(
            s,
            surface="test",
            kind=kw.pop("kind", "t.echo"),
            payload={"n": 1},
            settings=settings.jobs,
            **kw,
        ).id


@pytest.fixture
def queue(settings) -> JobQueue:  # type: ignore[no-untyped-def]
    return JobQueue(settings.database_url, settings.jobs, on_terminal=terminal_webhook)


def test_job_is_committed_and_claimed_once(settings, queue) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(settings)
    assert queue.get(job_id).status == "queued"
    with ThreadPoolExecutor(4) as pool:
        claims = list(pool.map(lambda i: queue.claim(f"w{i}"), range(4)))
    winners = [c for c in claims if c is not None]
    assert [c.id for c in winners] == [job_id]
    job = queue.get(job_id)
    assert job.status == "processing" and job.attempts == 1 and job.lease_owner


def test_only_lease_owner_finishes(settings, queue) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(settings)
    claimed = queue.claim("a")
    assert claimed is not None
    assert queue.complete(job_id, "b", {"x": 1}) is False
    assert queue.heartbeat(job_id, "b", 0.5).owned is False
    beat = queue.heartbeat(job_id, "a", 0.5, "half")
    assert beat.owned and not beat.cancel_requested
    assert queue.get(job_id).progress == 0.5
    assert queue.complete(job_id, "a", {"x": 1}) is True
    assert queue.complete(job_id, "a", {"x": 2}) is False
    job = queue.get(job_id)
    assert (job.status, job.result, job.progress) == ("completed", {"x": 1}, 1.0)


def test_expired_lease_is_reclaimed_then_given_up(settings, queue) -> None:  # type: ignore[no-untyped-def]
    settings.jobs.lease_s = 0.3
    job_id = add_job(settings)
    for attempt in range(1, settings.jobs.max_attempts + 1):
        claimed = queue.claim(f"w{attempt}")
        assert claimed is not None and claimed.attempt == attempt
        assert queue.claim("other") is None  # the lease holds while it is fresh
        time.sleep(0.4)
    assert queue.claim("late") is None
    job = queue.get(job_id)
    assert job.status == "failed" and job.error_code == "worker_lost"


def test_cancel_queued_and_running(settings, queue) -> None:  # type: ignore[no-untyped-def]
    queued = add_job(settings)
    assert queue.cancel(queued).status == "cancelled"
    with pytest.raises(Conflict):
        queue.cancel(queued)
    running = add_job(settings)
    queue.claim("w")
    assert queue.cancel(running).cancel_requested is True
    assert queue.heartbeat(running, "w").cancel_requested is True
    assert queue.mark_cancelled(running, "w")
    assert queue.get(running).status == "cancelled"
    with pytest.raises(NotFound):
        queue.cancel("nope")


def test_release_returns_job_without_spending_an_attempt(settings, queue) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(settings)
    queue.claim("w")
    queue.release(job_id, "w")
    job = queue.get(job_id)
    assert (job.status, job.attempts, job.lease_owner) == ("queued", 0, None)


def test_terminal_state_queues_one_webhook(settings, queue, receiver) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(settings, webhook_url=receiver.url, webhook_secret="s3cret")
    queue.claim("w")
    queue.fail(job_id, "w", PublicFailure("boom", "bad_input", "invalid_input", retryable=False))
    with session_scope(settings.database_url) as s:
        rows = s.query(WebhookDelivery).filter_by(url=receiver.url).all()
        assert len(rows) == 1
        row = rows[0]
        assert row.event_id == f"job.failed:{job_id}"
        assert row.payload["status"] == "failed" and row.payload["error"] == "boom"
        assert row.payload["error_category"] == "invalid_input"
        assert row.payload["retryable"] is False
        assert row.secret == "s3cret"
        job = s.get(Job, job_id)
        assert (job.error_code, job.error_category, job.error_retryable) == (
            "bad_input",
            "invalid_input",
            False,
        )


def test_cancelling_a_queued_job_queues_its_terminal_webhook(settings, queue, receiver) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(settings, webhook_url=receiver.url)
    job = queue.cancel(job_id)
    assert (job.status, job.error_code, job.error_category) == (
        "cancelled",
        "cancelled",
        "cancelled",
    )
    assert job.finished_at is not None
    with session_scope(settings.database_url) as s:
        (row,) = s.query(WebhookDelivery).filter_by(url=receiver.url).all()
        assert row.event_id == f"job.cancelled:{job_id}"
        assert row.payload["status"] == "cancelled"


def test_cancel_in_the_callers_transaction_and_running_refused(settings, queue) -> None:  # type: ignore[no-untyped-def]
    queued = add_job(settings)
    with pytest.raises(RuntimeError), session_scope(settings.database_url) as s:
        queue.cancel_in(s, queued)
        raise RuntimeError("the caller's own change failed")
    assert queue.get(queued).status == "queued"  # rolled back with the caller's rows
    queue.cancel(queued)
    running = add_job(settings)
    assert queue.claim("w").id == running  # type: ignore[union-attr]
    with pytest.raises(Conflict), session_scope(settings.database_url) as s:
        queue.cancel_in(s, running, running=False)
    assert queue.get(running).cancel_requested is False
