"""The job worker: claims durable jobs and delivers webhooks in background loops."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from ray import serve

from deployments.anomaly_training import RayTrainingLauncher
from deployments.common import (
    HEALTH,
    IO_CPUS,
    autoscaling,
    builder_runtime,
    ray_cluster_resources,
    serve_deployment_status,
)
from deployments.edit_batch import RayEditBatch
from deployments.metrics import METRICS
from visionserve.platform.context import build_context
from visionserve.platform.logging import configure_logging
from visionserve.platform.webhooks import Deliverer
from visionserve.platform.worker import Worker, load_job_modules
from visionserve.settings import settings_from
from visionserve.surfaces import job_modules
from visionserve.surfaces.edit.jobs import BATCH_RUNNER
from visionserve.surfaces.inspect.jobs import TRAINING_LAUNCHER

log = logging.getLogger(__name__)


@serve.deployment(
    name="job-worker",
    # I/O-bound: claims rows and awaits handles and Ray tasks; the work runs elsewhere.
    ray_actor_options={"num_cpus": IO_CPUS},
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
        load_job_modules(job_modules(args["surfaces"]) + args.get("job_modules", []))
        ctx = await asyncio.to_thread(
            build_context,
            settings,
            handles=handles,
            cluster_status=serve_deployment_status,
            cluster_resources=ray_cluster_resources,
            runtime={
                **builder_runtime(args),
                TRAINING_LAUNCHER: RayTrainingLauncher(settings),
                BATCH_RUNNER: RayEditBatch(settings),
            },
            metrics=METRICS,
        )
        self.worker = Worker(ctx)
        self.deliverer = Deliverer(
            settings.database_url,
            settings.webhooks,
            ctx.egress,
            worker_id=self.worker.worker_id,
            metrics=ctx.metrics,
        )
        self._loops = [
            asyncio.create_task(self.worker.run(), name="jobs"),
            asyncio.create_task(self.deliverer.run(), name="webhooks"),
        ]

    async def status(self) -> dict[str, Any]:
        """What this replica is doing (for operators and tests)."""
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
