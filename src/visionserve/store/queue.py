"""The durable job queue: the ``jobs`` table itself.

A job is a committed row before any 202 is sent. Workers claim a job with a lease
(``lease_owner`` + ``lease_expires_at``) and extend it with heartbeats; a job whose
lease expired (its worker died) is claimed again by another worker, up to
``max_attempts``. Every transition is a conditional UPDATE on the lease owner, so a
worker that lost its lease can never complete, fail or overwrite a job: a job
finishes exactly once. PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``; SQLite
serialises writers with ``BEGIN IMMEDIATE`` (see ``store.db``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.orm import Session

from visionserve.errors import Conflict, NotFound, PublicFailure
from visionserve.settings import JobSettings
from visionserve.store.db import session_scope
from visionserve.store.records import Job, utcnow

log = logging.getLogger(__name__)

QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED = (
    "queued",
    "processing",
    "completed",
    "failed",
    "cancelled",
)
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})
ACTIVE = (QUEUED, PROCESSING)
_CANCELLED = PublicFailure("cancelled", "cancelled", "cancelled", retryable=False, status=409)

# Called inside the transaction that makes a job terminal (webhook outbox rows).
TerminalHook = Callable[[Session, Job], None]


@dataclass(frozen=True)
class Claimed:
    """What a worker needs to run a job it holds the lease of."""

    id: str
    surface: str
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int

    @classmethod
    def of(cls, job: Job) -> Claimed:
        """What a worker needs of ``job``, a row whose lease it holds."""
        return cls(job.id, job.surface, job.kind, dict(job.payload), job.attempts, job.max_attempts)


@dataclass(frozen=True)
class Beat:
    """Heartbeat answer: whether the lease is still ours and whether cancel was asked."""

    owned: bool
    cancel_requested: bool


def enqueue(
    session: Session,
    *,
    surface: str,
    kind: str,
    payload: dict[str, Any],
    settings: JobSettings,
    job_id: str | None = None,
    owner_key_id: str | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    priority: int = 0,
    claimed_by: str | None = None,
) -> Job:
    """Add a queued job to ``session``; it is durable when the caller commits.

    Workers claim higher ``priority`` first, then the oldest. With ``claimed_by`` the
    job is committed already claimed by that worker (a ``ray job submit`` entry point
    that runs it itself); should that worker die, its lease expires and a worker of
    the cluster takes the job over.
    """
    job = Job(
        surface=surface,
        kind=kind,
        payload=payload,
        owner_key_id=owner_key_id,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        max_attempts=settings.max_attempts,
        priority=priority,
    )
    if job_id:
        job.id = job_id
    if claimed_by:
        job.status, job.lease_owner, job.attempts = PROCESSING, claimed_by, 1
        job.started_at = utcnow()
        job.lease_expires_at = job.started_at + timedelta(seconds=settings.lease_s)
    session.add(job)
    session.flush()
    return job


def active_jobs(session: Session, *, surface: str, owner_key_id: str) -> int:
    """How many of ``owner_key_id``'s jobs on ``surface`` are queued or running."""
    count = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(
            Job.surface == surface,
            Job.owner_key_id == owner_key_id,
            Job.status.in_(ACTIVE),
        )
    )
    return int(count or 0)


class JobQueue:
    """Claim, heartbeat and finish jobs. Thread-safe; one instance per process is enough."""

    def __init__(
        self,
        database_url: str,
        settings: JobSettings,
        on_terminal: TerminalHook | None = None,
    ) -> None:
        self.database_url = database_url
        self.settings = settings
        self.on_terminal = on_terminal

    def _lease_until(self) -> datetime:
        return utcnow() + timedelta(seconds=self.settings.lease_s)

    def claim(self, worker_id: str, kinds: list[str] | None = None) -> Claimed | None:
        """Take the next runnable job (queued, or processing with an expired lease).

        The highest ``priority`` goes first, then the oldest.
        """
        now = utcnow()
        with session_scope(self.database_url) as s:
            while True:
                query = (
                    select(Job)
                    .where(
                        or_(
                            (Job.status == QUEUED) & (Job.run_after <= now),
                            (Job.status == PROCESSING) & (Job.lease_expires_at < now),
                        )
                    )
                    .order_by(Job.priority.desc(), Job.created_at)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                if kinds is not None:
                    query = query.where(Job.kind.in_(kinds))
                job = s.scalars(query).first()
                if job is None:
                    return None
                if job.status == PROCESSING and job.attempts >= job.max_attempts:
                    # Its workers kept dying: stop retrying a job that kills workers.
                    lost = PublicFailure(
                        f"worker lost {job.attempts} times; giving up",
                        "worker_lost",
                        "internal",
                        retryable=False,
                    )
                    self._finish(s, job, FAILED, failure=lost)
                    continue
                if job.status == PROCESSING:
                    log.warning("re-claiming job %s after its lease expired", job.id)
                if job.cancel_requested:
                    self._finish(s, job, CANCELLED, failure=_CANCELLED)
                    continue
                job.status = PROCESSING
                job.lease_owner = worker_id
                job.lease_expires_at = self._lease_until()
                job.attempts += 1
                job.started_at = job.started_at or now
                return Claimed.of(job)

    def heartbeat(
        self,
        job_id: str,
        worker_id: str,
        progress: float | None = None,
        message: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> Beat:
        """Extend the lease and record progress; tells whether the job is still ours."""
        values: dict[str, Any] = {"lease_expires_at": self._lease_until(), "updated_at": utcnow()}
        if progress is not None:
            values["progress"] = max(0.0, min(1.0, progress))
        if message is not None:
            values["message"] = message
        if metrics is not None:
            values["metrics"] = metrics
        with session_scope(self.database_url) as s:
            result: CursorResult[Any] = s.execute(  # type: ignore[assignment]
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == worker_id, Job.status == PROCESSING)
                .values(**values)
            )
            owned = result.rowcount
            cancel = s.scalar(select(Job.cancel_requested).where(Job.id == job_id))
        return Beat(owned=bool(owned), cancel_requested=bool(cancel))

    def complete(self, job_id: str, worker_id: str, result: dict[str, Any]) -> bool:
        return self._finish_owned(job_id, worker_id, COMPLETED, result=result)

    def fail(self, job_id: str, worker_id: str, failure: PublicFailure) -> bool:
        """Finish a job as failed with the public face of its failure (see ``errors``)."""
        return self._finish_owned(job_id, worker_id, FAILED, failure=failure)

    def retry(self, job_id: str, worker_id: str, failure: PublicFailure) -> bool:
        """Queue a job again after a failure of the cluster, not of its input.

        The attempt stays used (``max_attempts`` bounds the retries) and the next one
        waits a backoff that doubles per attempt, long enough for Serve to replace the
        replicas of a lost node.
        """
        with session_scope(self.database_url) as s:
            job = _owned(s, job_id, worker_id)
            if job is None:
                return False
            delay = self.settings.retry_backoff_s * 2 ** max(0, job.attempts - 1)
            job.status = QUEUED
            job.lease_owner = None
            job.lease_expires_at = None
            job.run_after = utcnow() + timedelta(seconds=delay)
            job.message = (
                f"retrying in {delay:.0f} s (attempt {job.attempts} of {job.max_attempts}):"
                f" {failure.message}"
            )
            return True

    def mark_cancelled(self, job_id: str, worker_id: str) -> bool:
        return self._finish_owned(job_id, worker_id, CANCELLED, failure=_CANCELLED)

    def release(self, job_id: str, worker_id: str) -> None:
        """Give a job back to the queue (worker shutting down) without using an attempt."""
        with session_scope(self.database_url) as s:
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == worker_id, Job.status == PROCESSING)
                .values(
                    status=QUEUED,
                    lease_owner=None,
                    lease_expires_at=None,
                    attempts=Job.attempts - 1,
                )
            )

    def cancel(self, job_id: str, *, running: bool = True) -> Job:
        """Cancel a queued job at once; ask a running one to stop (its worker sees it).

        See :meth:`cancel_in`; this one runs in a transaction of its own.
        """
        with session_scope(self.database_url) as s:
            job = self.cancel_in(s, job_id, running=running)
            s.expunge(job)
            return job

    def cancel_in(self, s: Session, job_id: str, *, running: bool = True) -> Job:
        """Cancel ``job_id`` inside the caller's transaction (its own rows change with it).

        A queued job becomes ``cancelled`` at once and the terminal hook runs (its
        webhook is queued in the same transaction); a running one is asked to stop.

        Args:
            s: The caller's session.
            job_id: The job.
            running: Whether a running job may be asked to stop; if not, it is a 409.

        Raises:
            NotFound: No such job.
            Conflict: The job already finished, or is running and ``running`` is false.
        """
        job = s.get(Job, job_id, with_for_update=True)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        if job.status in TERMINAL:
            raise Conflict(f"job {job_id} is already {job.status}")
        if job.status == QUEUED:
            self._finish(s, job, CANCELLED, failure=_CANCELLED)
        elif running:
            job.cancel_requested = True
        else:
            raise Conflict(f"job {job_id} is already {job.status}")
        s.flush()
        return job

    def get(self, job_id: str) -> Job:
        with session_scope(self.database_url) as s:
            job = s.get(Job, job_id)
            if job is None:
                raise NotFound(f"job {job_id} not found")
            s.expunge(job)
            return job

    def _finish_owned(self, job_id: str, worker_id: str, status: str, **fields: Any) -> bool:
        with session_scope(self.database_url) as s:
            job = _owned(s, job_id, worker_id)
            if job is None:
                log.warning("job %s: lease lost before it could be marked %s", job_id, status)
                return False
            self._finish(s, job, status, **fields)
            return True

    def _finish(
        self,
        s: Session,
        job: Job,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        failure: PublicFailure | None = None,
    ) -> None:
        job.status = status
        job.result = result
        job.error = failure.message if failure else None
        job.error_code = failure.code if failure else None
        job.error_category = failure.category if failure else None
        job.error_retryable = failure.retryable if failure else None
        job.lease_owner = None
        job.lease_expires_at = None
        job.finished_at = utcnow()
        if status == COMPLETED:
            job.progress = 1.0
        s.flush()
        if self.on_terminal is not None:
            self.on_terminal(s, job)


def _owned(s: Session, job_id: str, worker_id: str) -> Job | None:
    """The job, locked, while ``worker_id`` holds its lease; None once it lost it."""
    return s.scalars(
        select(Job)
        .where(Job.id == job_id, Job.lease_owner == worker_id, Job.status == PROCESSING)
        .with_for_update()
    ).first()
