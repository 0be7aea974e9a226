"""inspect's durable jobs: anomaly model training.

The job worker runs each training through the injected :class:`TrainingLauncher`
(a Ray generator task in the cluster: ``deployments/anomaly_training.py``) and keeps
the job's progress and metrics current from the events it streams.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from visionserve.errors import public_failure
from visionserve.platform.worker import JobContext, job_kind
from visionserve.surfaces.inspect.model_service import TRAIN_KIND, ModelService

log = logging.getLogger(__name__)

# The name under which the job worker injects its launcher into ``AppContext.runtime``.
TRAINING_LAUNCHER = "inspect.training"

Progress = Callable[[float, dict[str, Any]], None]


class TrainingLauncher(Protocol):
    """Runs one training to its end; cancelling the awaiting task stops the run."""

    async def run(self, spec: dict[str, Any], progress: Progress) -> dict[str, Any]:
        """Train ``spec``; report ``progress(fraction, metrics)``; return the result event."""
        ...


@job_kind(TRAIN_KIND)
async def train_job(ctx: JobContext) -> dict[str, Any]:
    """Run one training and keep the job's progress and metrics current."""
    launcher: TrainingLauncher = ctx.app.runtime_object(TRAINING_LAUNCHER, "Training")
    service = ModelService(ctx.app.settings, ctx.app.blobs, ctx.app.queue)
    model_id = ctx.payload["model_id"]
    spec = await asyncio.to_thread(service.begin, model_id)
    if spec is None:
        return {"model_id": model_id, "skipped": "the model was deleted"}

    def progress(fraction: float, metrics: dict[str, Any]) -> None:
        ctx.progress(fraction, metrics.get("stage"), metrics)

    try:
        result = await launcher.run(spec, progress)
    except asyncio.CancelledError:
        await asyncio.to_thread(service.finish, model_id, error="Training was cancelled")
        raise
    except Exception as exc:
        if ctx.will_retry(exc):
            raise  # the training's node was lost: the model stays "training" for the next try
        failure = public_failure(exc, ref=f"job {ctx.job_id}", logger=log)
        message = f"Training failed: {failure.message}"
        if not await asyncio.to_thread(service.finish, model_id, error=message):
            return await _deleted(service, model_id, spec)  # its images went with it
        raise replace(failure, message=message).error(code="training_failed") from exc
    metrics = {**result["metrics"], "input_size": result["input_size"]}
    metrics["training_seconds"] = round(result["seconds"], 2)
    if not await asyncio.to_thread(service.finish, model_id, metrics=metrics):
        return await _deleted(service, model_id, spec)
    return {"model_id": model_id, "metrics": metrics}


async def _deleted(service: ModelService, model_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The model (or its project) was deleted while it trained: drop what the run wrote."""
    await asyncio.to_thread(service.blobs.delete_prefix, spec["blob_prefix"])
    return {"model_id": model_id, "skipped": "the model was deleted"}
