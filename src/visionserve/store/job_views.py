"""Read-only views of the jobs table: per-kind queue statistics and filtered listings.

The queue (``store.queue``) owns every transition of a job; these only read, for the
metrics the job worker exports and for ``visionserve jobs list``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select

from visionserve.store.db import session_scope
from visionserve.store.queue import ACTIVE, QUEUED
from visionserve.store.records import Job


@dataclass(frozen=True)
class KindStats:
    """How many jobs of one kind wait or run, and since when the oldest has waited."""

    queued: int = 0
    processing: int = 0
    oldest_queued_at: datetime | None = None


def aware(when: datetime) -> datetime:
    """SQLite hands datetimes back without their (UTC) zone; PostgreSQL keeps it."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def queue_stats(database_url: str) -> dict[str, KindStats]:
    """Queued and processing jobs per kind: one grouped query over active rows."""
    with session_scope(database_url) as s:
        rows = s.execute(
            select(Job.kind, Job.status, func.count(), func.min(Job.created_at))
            .where(Job.status.in_(ACTIVE))
            .group_by(Job.kind, Job.status)
        ).all()
    found: dict[str, KindStats] = {}
    for kind, status, count, oldest in rows:
        was = found.get(kind, KindStats())
        if status == QUEUED:
            found[kind] = KindStats(int(count), was.processing, aware(oldest))
        else:
            found[kind] = KindStats(was.queued, int(count), was.oldest_queued_at)
    return found


def list_jobs(
    database_url: str,
    *,
    surface: str | None = None,
    status: str | None = None,
    limit: int = 20,
) -> list[Job]:
    """The newest jobs first, optionally of one surface and in one status."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit)
    if surface is not None:
        query = query.where(Job.surface == surface)
    if status is not None:
        query = query.where(Job.status == status)
    with session_scope(database_url) as s:
        jobs = list(s.scalars(query))
        s.expunge_all()
    return jobs
