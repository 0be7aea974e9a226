"""cutout composition: shotgun fan-out and the bg-removal → upscale pipeline.

Composition only: every model call is a ``DeploymentResponse``; in the pipeline the
background-removal response is passed straight into the upscaler, so the cut-out goes
from one replica to the next without coming back here. Each model has its own
timeout; one failing model never fails the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np
from ray import serve

from deployments.common import HEALTH, IO_CPUS, autoscaling
from visionserve.errors import public_failure
from visionserve.models.cutout import Cutout

log = logging.getLogger(__name__)


@serve.deployment(
    name="cutout-graph",
    ray_actor_options={"num_cpus": IO_CPUS},
    autoscaling_config=autoscaling(16),
    max_ongoing_requests=64,
    max_queued_requests=128,
    **HEALTH,
    graceful_shutdown_timeout_s=30,
)
class CutoutGraph:
    """Fans a request out to the selected removers, and chains them into the upscaler."""

    def __init__(
        self,
        removers: dict[str, Any],
        names: dict[str, str],
        upscaler: Any,
        default_timeout_s: float = 60.0,
    ) -> None:
        self.removers = removers  # model_id -> DeploymentHandle (local or remote provider)
        self.names = names  # model_id -> display name
        self.upscaler = upscaler
        self.default_timeout_s = default_timeout_s

    async def shotgun(
        self,
        image: np.ndarray,
        model_ids: list[str],
        output_format: str,
        timeout_s: float | None = None,
    ) -> list[dict[str, Any]]:
        """Every selected model on ``image`` in parallel; one result dict per model."""
        timeout = timeout_s or self.default_timeout_s
        calls = [self.removers[m].remove.remote(image, output_format) for m in model_ids]
        return list(
            await asyncio.gather(
                *(self._settle(m, c, timeout) for m, c in zip(model_ids, calls, strict=True))
            )
        )

    async def process(
        self,
        image: np.ndarray,
        model_ids: list[str],
        scale: int,
        method: str,
        output_format: str,
        timeout_s: float | None = None,
    ) -> list[dict[str, Any]]:
        """Background removal then upscaling, per model, all models in parallel."""
        timeout = timeout_s or self.default_timeout_s
        calls = []
        for m in model_ids:
            cutout = self.removers[m].remove.remote(image, None)
            calls.append(self.upscaler.upscale.remote(cutout, scale, method, output_format, True))
        return list(
            await asyncio.gather(
                *(self._settle(m, c, timeout * 2) for m, c in zip(model_ids, calls, strict=True))
            )
        )

    async def _settle(self, model_id: str, call: Any, timeout_s: float) -> dict[str, Any]:
        started = time.perf_counter()
        result: dict[str, Any] = {"model_id": model_id, "model_name": self.names.get(model_id)}
        try:
            cutout: Cutout = await asyncio.wait_for(call, timeout_s)
        except TimeoutError:
            call.cancel()
            result.update(status="error", error=f"timeout after {timeout_s:g}s", code="timeout")
        except Exception as exc:
            # One model's failure, shown beside the others: its public face only.
            failure = public_failure(exc, logger=log)
            result.update(status="error", error=failure.message, code=failure.code)
        else:
            result.update(status="success", cutout=cutout, cost_usd=cutout.cost_usd)
        result["processing_time_ms"] = round((time.perf_counter() - started) * 1000)
        return result
