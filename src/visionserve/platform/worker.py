"""Job kinds and the worker loop that runs them (Ray-free; the Serve deployment owns one).

Surfaces register their job kinds with :func:`job_kind`; the worker claims jobs from
the durable queue, runs the handler beside a heartbeat that keeps the lease alive,
and stops the handler when the job is cancelled or the lease is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from visionserve.errors import JobCancelled, cluster_failure, public_failure
from visionserve.platform.metrics import JOB_PROGRESS, JOB_TRANSITIONS
from visionserve.store.queue import Claimed
from visionserve.store.records import Job

if TYPE_CHECKING:
    from visionserve.platform.context import AppContext

log = logging.getLogger(__name__)

Handler = Callable[["JobContext"], Coroutine[Any, Any, dict[str, Any]]]
PayloadBuilder = Callable[[Job], dict[str, Any]]


@dataclass(frozen=True)
class JobKind:
    """A kind of job: its handler and, optionally, the webhook body its contract wants."""

    name: str
    handler: Handler
    webhook_payload: PayloadBuilder | None = None


REGISTRY: dict[str, JobKind] = {}
Chore = Callable[["AppContext"], Coroutine[Any, Any, None]]
# Maintenance (expiry sweeps, ...) every worker runs: name -> (interval_s, function).
PERIODIC: dict[str, tuple[float, Chore]] = {}


def job_kind(
    name: str, *, webhook_payload: PayloadBuilder | None = None
) -> Callable[[Handler], Handler]:
    """Register an async handler for the job kind ``name`` (e.g. ``"cutout.shotgun"``)."""

    def register(handler: Handler) -> Handler:
        REGISTRY[name] = JobKind(name, handler, webhook_payload)
        return handler

    return register


def periodic(name: str, interval_s: float) -> Callable[[Chore], Chore]:
    """Register ``fn(app)`` to run every ``interval_s`` on each job worker.

    Functions must be idempotent: with several workers they run concurrently.
    """

    def register(fn: Chore) -> Chore:
        PERIODIC[name] = (interval_s, fn)
        return fn

    return register


def load_job_modules(modules: Iterable[str]) -> None:
    """Import the modules whose ``@job_kind`` decorators fill the registry."""
    for module in modules:
        importlib.import_module(module)


@dataclass
class JobContext:
    """Handed to a handler: its payload, progress reporting and cancellation."""

    job_id: str
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    # The worker's services (settings, stores, model handles, Ray-side runtime).
    app: AppContext
    _progress: float | None = None
    _message: str | None = None
    _metrics: dict[str, Any] | None = None
    cancelled: bool = False
    # (whole percent, message) of the last progress line logged.
    _logged: tuple[int, str | None] | None = None
    # Whether a heartbeat exported this job's progress gauge (work that lasts).
    _gauged: bool = False

    def progress(
        self, fraction: float, message: str | None = None, metrics: dict[str, Any] | None = None
    ) -> None:
        """Record progress (0..1) and live metrics; the next heartbeat stores them."""
        self._progress = fraction
        if message is not None:
            self._message = message
        if metrics is not None:
            self._metrics = metrics
        self._log_progress()

    def _log_progress(self) -> None:
        # One line per step (a new whole percent or a new message), not one per call.
        percent = int(max(0.0, min(1.0, self._progress or 0.0)) * 100)
        if (percent, self._message) == self._logged:
            return
        self._logged = (percent, self._message)
        details = " ".join(
            f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in (self._metrics or {}).items()
            if isinstance(value, int | float | str) and value != self._message
        )
        log.info(
            "job %s (%s) %d%% %s%s",
            self.job_id,
            self.kind,
            percent,
            self._message or "",
            f" [{details}]" if details else "",
        )

    def will_retry(self, exc: BaseException) -> bool:
        """Whether the worker queues this job again after ``exc`` instead of failing it.

        Only a failure of the cluster (a replica or node lost, Serve at capacity) is
        retried, while attempts are left; a handler keeps its records and inputs as
        they are then, for the next attempt.
        """
        return cluster_failure(exc) and self.attempt < self.max_attempts

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise JobCancelled("job was cancelled")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Claims and runs jobs; ``concurrency`` jobs at a time."""

    def __init__(
        self,
        app: AppContext,
        *,
        kinds: dict[str, JobKind] | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.queue = app.queue
        self.kinds = kinds if kinds is not None else REGISTRY
        self.app = app
        self.worker_id = worker_id or default_worker_id()
        self.running: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        # Set when a slot frees or the worker stops: the claim loop looks at once
        # rather than after poll_s.
        self._wake = asyncio.Event()

    @property
    def settings(self):  # type: ignore[no-untyped-def]
        return self.queue.settings

    async def run(self) -> None:
        """Poll until :meth:`stop`; each free slot claims the next job."""
        log.info("worker %s started (kinds: %s)", self.worker_id, sorted(self.kinds))
        chores = [
            asyncio.create_task(self._every(name, interval, fn))
            for name, (interval, fn) in PERIODIC.items()
        ]
        try:
            await self._claim_loop()
        finally:
            for chore in chores:
                chore.cancel()

    async def _every(
        self,
        name: str,
        interval_s: float,
        fn: Chore,
    ) -> None:
        while not self._stopping.is_set():
            try:
                await fn(self.app)
            except Exception:
                log.exception("periodic %s failed; retrying in %.0f s", name, interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval_s)

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            claimed = None
            if len(self.running) < self.settings.concurrency:
                try:
                    claimed = await asyncio.to_thread(
                        self.queue.claim, self.worker_id, sorted(self.kinds)
                    )
                except Exception:
                    log.exception("claim failed; retrying")
            if claimed is not None:
                tags = {"kind": claimed.kind, "state": "processing"}
                self.app.metrics.inc(JOB_TRANSITIONS, tags)
                task = asyncio.create_task(self.run_claimed(claimed))
                self.running[claimed.id] = task
                task.add_done_callback(partial(self._forget, claimed.id))
                continue  # a slot may still be free: claim again at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_s)
            self._wake.clear()

    def _forget(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self.running.pop(job_id, None)
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; give running jobs back to the queue for another worker."""
        self._stopping.set()
        self._wake.set()
        for job_id, task in list(self.running.items()):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            await asyncio.to_thread(self.queue.release, job_id, self.worker_id)

    async def run_claimed(self, claimed: Claimed) -> None:
        """Run a job this worker holds the lease of to its end (or its lease's loss)."""
        ctx = JobContext(
            claimed.id,
            claimed.kind,
            claimed.payload,
            claimed.attempt,
            claimed.max_attempts,
            self.app,
        )
        kind = self.kinds[claimed.kind]
        handler = asyncio.create_task(kind.handler(ctx))
        beat = asyncio.create_task(self._heartbeat(ctx, handler))
        try:
            result = await handler
        except asyncio.CancelledError:
            if self._stopping.is_set():
                raise
            if ctx.cancelled:
                await asyncio.to_thread(self.queue.mark_cancelled, claimed.id, self.worker_id)
            # else: the lease was lost; the job belongs to another worker now.
            return
        except JobCancelled:
            await asyncio.to_thread(self.queue.mark_cancelled, claimed.id, self.worker_id)
        except Exception as exc:
            # The job's stored error is what its client sees: the public face only;
            # an unexpected exception is logged here under the job's id.
            failure = public_failure(exc, ref=f"job {claimed.id}", logger=log)
            if ctx.will_retry(exc):
                log.warning(
                    "job %s (%s): %s; queued again", claimed.id, claimed.kind, failure.message
                )
                if await asyncio.to_thread(self.queue.retry, claimed.id, self.worker_id, failure):
                    self.app.metrics.inc(
                        JOB_TRANSITIONS, {"kind": claimed.kind, "state": "retried"}
                    )
            else:
                log.info("job %s (%s) failed: %s", claimed.id, claimed.kind, failure.code)
                await asyncio.to_thread(self.queue.fail, claimed.id, self.worker_id, failure)
        else:
            await asyncio.to_thread(self.queue.complete, claimed.id, self.worker_id, result)
            if ctx._gauged:
                self.app.metrics.set(JOB_PROGRESS, 1.0, {"job_id": ctx.job_id, "kind": ctx.kind})
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _heartbeat(self, ctx: JobContext, handler: asyncio.Task[Any]) -> None:
        while not handler.done():
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                beat = await asyncio.to_thread(
                    self.queue.heartbeat,
                    ctx.job_id,
                    self.worker_id,
                    ctx._progress,
                    ctx._message,
                    ctx._metrics,
                )
            except Exception:
                log.exception("heartbeat for job %s failed", ctx.job_id)
                continue
            if beat.owned and ctx._progress is not None:
                # Only work that outlives a heartbeat gets a series: job ids are unbounded.
                fraction = max(0.0, min(1.0, ctx._progress))
                tags = {"job_id": ctx.job_id, "kind": ctx.kind}
                self.app.metrics.set(JOB_PROGRESS, fraction, tags)
                ctx._gauged = True
            if beat.cancel_requested and not ctx.cancelled:
                ctx.cancelled = True
                handler.cancel()
            elif not beat.owned:
                log.warning("job %s: lease lost; stopping the handler", ctx.job_id)
                handler.cancel()


def terminal_webhook(session: Any, job: Job) -> None:
    """Queue hook: announce a finished job to its ``webhook_url`` (same transaction)."""
    if not job.webhook_url:
        return
    from visionserve.platform import (
        webhooks,  # local: webhooks pulls httpx, workers may not need it
    )

    kind = REGISTRY.get(job.kind)
    payload = (
        kind.webhook_payload(job)
        if kind is not None and kind.webhook_payload is not None
        else {
            "event": f"job.{job.status}",
            "job_id": job.id,
            "status": job.status,
            "result": job.result,
            "error": job.error,
            "error_category": job.error_category,
            "retryable": job.error_retryable,
        }
    )
    webhooks.enqueue(
        session,
        event_id=f"job.{job.status}:{job.id}",
        event_type=f"job.{job.status}",
        url=job.webhook_url,
        payload=payload,
        secret=job.webhook_secret,
    )
