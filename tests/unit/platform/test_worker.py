"""The worker loop: runs handlers, reports progress, honours cancel, survives lease loss."""

from __future__ import annotations

import asyncio

import pytest

from visionserve.errors import BadRequest
from visionserve.platform.context import build_context
from visionserve.platform.worker import JobContext, JobKind, Worker
from visionserve.store.db import session_scope
from visionserve.store.queue import JobQueue, enqueue


async def echo(ctx: JobContext) -> dict:  # type: ignore[type-arg]
    return {"echo": ctx.payload}


async def slow(ctx: JobContext) -> dict:  # type: ignore[type-arg]
    for i in range(100):
        ctx.progress(i / 100, f"step {i}")
        await asyncio.sleep(0.05)
    return {"done": True}


async def bad(ctx: JobContext) -> dict:  # type: ignore[type-arg]
    raise BadRequest("payload is wrong", code="bad_payload")


async def crash(ctx: JobContext) -> dict:  # type: ignore[type-arg]
    raise RuntimeError("/secret/server/path kaput")


class ActorDiedError(RuntimeError):
    """Named as Ray names a replica that died under a call (the library never imports Ray)."""


async def node_lost_once(ctx: JobContext) -> dict:  # type: ignore[type-arg]
    if ctx.attempt == 1:
        raise ActorDiedError("The actor died unexpectedly before finishing this task.")
    return {"attempt": ctx.attempt}


async def node_always_lost(ctx: JobContext) -> dict:  # type: ignore[type-arg]
    raise ActorDiedError("The actor died unexpectedly before finishing this task.")


KINDS = {
    k.name: k
    for k in (
        JobKind("echo", echo),
        JobKind("slow", slow),
        JobKind("bad", bad),
        JobKind("crash", crash),
        JobKind("node_lost_once", node_lost_once),
        JobKind("node_always_lost", node_always_lost),
    )
}


def add(settings, kind: str) -> str:  # type: ignore[no-untyped-def]
    with session_scope(settings.database_url) as s:
        return enqueue(s, surface="t", kind=kind, payload={"k": kind}, settings=settings.jobs).id


async def wait_status(queue: JobQueue, job_id: str, status: str, timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.05)):
        if (await asyncio.to_thread(queue.get, job_id)).status == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never became {status}: {queue.get(job_id).status}")


@pytest.fixture
def queue(settings) -> JobQueue:  # type: ignore[no-untyped-def]
    return JobQueue(settings.database_url, settings.jobs)


async def test_runs_jobs_and_records_outcomes(settings, queue, library_log) -> None:  # type: ignore[no-untyped-def]
    worker = Worker(build_context(settings), kinds=KINDS)
    loop = asyncio.create_task(worker.run())
    ids = {k: add(settings, k) for k in ("echo", "bad", "crash")}
    try:
        await wait_status(queue, ids["echo"], "completed")
        await wait_status(queue, ids["bad"], "failed")
        await wait_status(queue, ids["crash"], "failed")
    finally:
        await worker.stop()
        await loop
    assert queue.get(ids["echo"]).result == {"echo": {"k": "echo"}}
    failed = queue.get(ids["bad"])
    assert (failed.error, failed.error_code) == ("payload is wrong", "bad_payload")
    assert (failed.error_category, failed.error_retryable) == ("invalid_input", False)
    # An unexpected exception: the stored (public) error names the job, not the internals...
    crashed = queue.get(ids["crash"])
    assert crashed.error_code == "internal_error" and crashed.error_category == "internal"
    assert crashed.error_retryable is False
    assert "/secret" not in crashed.error and "kaput" not in crashed.error
    assert "RuntimeError" not in crashed.error and ids["crash"] in crashed.error
    # ...and the log has the whole exception under that job id.
    (record,) = [r for r in library_log.records if r.exc_info and ids["crash"] in r.getMessage()]
    assert record.levelname == "ERROR"
    assert "/secret/server/path kaput" in library_log.text


async def test_progress_then_cancel_stops_the_handler(settings, queue) -> None:  # type: ignore[no-untyped-def]
    worker = Worker(build_context(settings), kinds=KINDS)
    loop = asyncio.create_task(worker.run())
    job_id = add(settings, "slow")
    try:
        await wait_status(queue, job_id, "processing")
        await asyncio.sleep(0.8)
        seen = await asyncio.to_thread(queue.get, job_id)
        assert 0 < seen.progress < 1 and seen.message.startswith("step")
        await asyncio.to_thread(queue.cancel, job_id)
        await wait_status(queue, job_id, "cancelled", timeout=3)
        assert job_id not in worker.running
    finally:
        await worker.stop()
        await loop


async def test_a_freed_slot_claims_the_next_job_at_once(settings, queue) -> None:  # type: ignore[no-untyped-def]
    """A worker at its concurrency does not wait out poll_s when a job ends."""
    jobs = settings.jobs.model_copy(update={"concurrency": 1, "poll_s": 30.0})
    worker = Worker(build_context(settings.model_copy(update={"jobs": jobs})), kinds=KINDS)
    first, second = add(settings, "echo"), add(settings, "echo")
    loop = asyncio.create_task(worker.run())
    try:
        await wait_status(queue, first, "completed", timeout=5)
        await wait_status(queue, second, "completed", timeout=5)
    finally:
        await worker.stop()
        await asyncio.wait_for(loop, 5)  # stopping wakes the loop too


async def test_stop_hands_running_jobs_back(settings, queue) -> None:  # type: ignore[no-untyped-def]
    worker = Worker(build_context(settings), kinds=KINDS)
    loop = asyncio.create_task(worker.run())
    job_id = add(settings, "slow")
    await wait_status(queue, job_id, "processing")
    await worker.stop()
    await loop
    job = queue.get(job_id)
    assert (job.status, job.attempts) == ("queued", 0)
    other = Worker(build_context(settings), kinds=KINDS)
    loop = asyncio.create_task(other.run())
    try:
        await wait_status(queue, job_id, "completed", timeout=15)
    finally:
        await other.stop()
        await loop


async def test_a_lost_replica_queues_the_job_again_until_attempts_run_out(settings, queue) -> None:  # type: ignore[no-untyped-def]
    settings.jobs.retry_backoff_s = 0.1
    queue = JobQueue(settings.database_url, settings.jobs)
    worker = Worker(build_context(settings), kinds=KINDS)
    loop = asyncio.create_task(worker.run())
    once, always = add(settings, "node_lost_once"), add(settings, "node_always_lost")
    try:
        await wait_status(queue, once, "completed")
        await wait_status(queue, always, "failed")
    finally:
        await worker.stop()
        await loop
    # The second attempt ran and is the one result; the first left no trace but the count.
    done = queue.get(once)
    assert (done.result, done.attempts, done.error) == ({"attempt": 2}, 2, None)
    # A cluster that keeps failing: every attempt used, then the 503-style failure.
    failed = queue.get(always)
    assert failed.attempts == settings.jobs.max_attempts == 3
    assert (failed.error_code, failed.error_category) == ("service_unavailable", "unavailable")
    assert failed.error == "A model replica is unavailable; retry shortly"
