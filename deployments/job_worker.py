"""The job worker: claims durable jobs and delivers webhooks in background loops."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve

from deployments.common import HEALTH, autoscaling, configure_logging
from visionserve.api.surfaces import SURFACES
from visionserve.egress import EgressPolicy
from visionserve.settings import settings_from
from visionserve.store.blobs import make_blob_store
from visionserve.store.db import engine_for
from visionserve.store.queue import JobQueue
from visionserve.webhooks import Deliverer
from visionserve.worker import Worker, load_job_modules, terminal_webhook

log = logging.getLogger(__name__)


@serve.deployment(
    name="job-worker",
    ray_actor_options={"num_cpus": 0.1},
    autoscaling_config=autoscaling(2),
    max_ongoing_requests=8,
    max_queued_requests=32,
    **HEALTH,
    graceful_shutdown_timeout_s=30,
)
class JobWorker:
    """Runs every registered job kind; handlers call model deployments via ``handles``."""

    async def __init__(self, args: dict[str, Any], handles: dict[str, Any]) -> None:
        configure_logging()
        settings = settings_from(args.get("settings"))
        surfaces = [SURFACES[name] for name in args["surfaces"]]
        load_job_modules([m for s in surfaces for m in s.job_modules])
        load_job_modules(args.get("job_modules", []))
        database_url = str(settings.database_url)
        await asyncio.to_thread(engine_for, database_url)
        queue = JobQueue(database_url, settings.jobs, on_terminal=terminal_webhook)
        services = {"settings": settings, "handles": handles, "blobs": make_blob_store(settings)}
        self.worker = Worker(queue, services=services)
        self.deliverer = Deliverer(
            database_url,
            settings.webhooks,
            EgressPolicy(settings.egress),
            worker_id=self.worker.worker_id,
        )
        self._loops = [
            asyncio.create_task(self.worker.run(), name="jobs"),
            asyncio.create_task(self.deliverer.run(), name="webhooks"),
        ]

    async def status(self) -> dict[str, Any]:
        """What this replica is doing (for operators and tests)."""
        import os

        return {
            "worker_id": self.worker.worker_id,
            "pid": os.getpid(),
            "running": sorted(self.worker.running),
        }

    async def check_health(self) -> None:
        for loop in self._loops:
            if loop.done():
                raise RuntimeError(f"background loop {loop.get_name()!r} stopped")

    async def __del__(self) -> None:
        # Serve calls __del__ on graceful shutdown: hand running jobs back at once.
        self.deliverer.stop()
        await self.worker.stop()
