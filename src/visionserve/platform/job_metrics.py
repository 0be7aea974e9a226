"""The job metrics that are not a worker's own: terminal transitions and queue gauges.

A job becomes terminal in several places (its worker finishes it, the API cancels a
queued one, a claim gives up on one that kept killing workers); the queue's terminal
hook sees them all, so that is where they are counted. Queue depth and the oldest
queued job's age come from the database, refreshed by every job worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from visionserve.platform.metrics import (
    JOB_TRANSITIONS,
    JOBS_PROCESSING,
    QUEUE_DEPTH,
    QUEUE_OLDEST_AGE,
    Metrics,
)
from visionserve.platform.worker import REGISTRY, periodic, terminal_webhook
from visionserve.store.job_views import queue_stats
from visionserve.store.records import Job, utcnow

if TYPE_CHECKING:
    from visionserve.platform.context import AppContext

# Often enough for a dashboard, rare enough for the database (one grouped query).
QUEUE_METRICS_INTERVAL_S = 5.0
# Kinds this process has exported a gauge for: each keeps getting a value (0 once drained).
_exported: set[str] = set()


def terminal_hook(metrics: Metrics) -> Callable[[Any, Job], None]:
    """The queue's terminal hook: the job's webhook, then its transition counted."""

    def hook(session: Any, job: Job) -> None:
        terminal_webhook(session, job)
        metrics.inc(JOB_TRANSITIONS, {"kind": job.kind, "state": job.status})

    return hook


@periodic("metrics.queue", QUEUE_METRICS_INTERVAL_S)
async def export_queue_metrics(app: AppContext) -> None:
    """Queued and processing jobs and the oldest queued job's age, per job kind.

    Every worker exports the same cluster-wide numbers (read from the database): a
    dashboard aggregates them with ``max``, never ``sum``. Every registered kind gets a
    value, as does every kind exported before, so a drained queue reads 0 rather than
    its last depth.
    """
    stats = await asyncio.to_thread(queue_stats, app.settings.database_url)
    now = utcnow()
    _exported.update(REGISTRY, stats)
    for kind in sorted(_exported):
        found = stats.get(kind)
        oldest = found.oldest_queued_at if found is not None else None
        tags = {"kind": kind}
        app.metrics.set(QUEUE_DEPTH, float(found.queued if found else 0), tags)
        app.metrics.set(JOBS_PROCESSING, float(found.processing if found else 0), tags)
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        app.metrics.set(QUEUE_OLDEST_AGE, age, tags)
