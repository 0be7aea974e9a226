"""Background removal: one deployment class, bound once per rembg model (bg-<name>)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
from PIL import Image
from ray import serve

from deployments.common import HEALTH, GiB, autoscaling, model_cpus
from deployments.metrics import measured
from visionserve.errors import Unprocessable, public_failure
from visionserve.models.bg_removal import BackgroundRemover
from visionserve.models.cutout import Cutout
from visionserve.platform.images import encode_image
from visionserve.platform.logging import configure_logging
from visionserve.settings import settings_from

log = logging.getLogger(__name__)

BG_FAILED = "bg_removal_failed"


def finish(cutout: Image.Image, output_format: str | None, cost_usd: float = 0.0) -> Cutout:
    """Pixels for the next stage, or encoded bytes when this is the last one."""
    result = Cutout.of(np.asarray(cutout.convert("RGBA")), cost_usd)
    if output_format:
        result.encoded = encode_image(cutout, output_format)  # type: ignore[arg-type]
        result.pixels = None
    return result


@serve.deployment(
    # Measured at rest: u2net 1.05 GB, u2netp 0.66 GB; a 12 MP image adds about 0.4 GB.
    # One value for every model bound from this class: the larger default model's.
    ray_actor_options={"num_cpus": model_cpus(), "memory": 7 * GiB // 4},
    autoscaling_config=autoscaling(4),
    # @serve.batch never batches beyond max_ongoing_requests: keep it above the batch size.
    max_ongoing_requests=16,
    max_queued_requests=64,
    user_config={"max_batch_size": 4, "batch_wait_timeout_s": 0.01, "threads": 1},
    **HEALTH,
    graceful_shutdown_timeout_s=20,
)
class BackgroundRemoval:
    """Owns one :class:`BackgroundRemover`; ``remove`` is dynamically batched."""

    def __init__(self, model: str, settings: dict[str, Any]) -> None:
        configure_logging()
        self.model = model
        self.model_home = settings_from(settings).model_home
        # Loads and warms the weights: a missing file fails the replica with a clear error.
        self.threads = 1
        self.remover = BackgroundRemover(model, self.model_home, threads=1)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Runtime tunables from serve_config.yaml's ``user_config``."""
        self.remove_batch.set_max_batch_size(int(config.get("max_batch_size", 4)))
        self.remove_batch.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.01)))
        threads = int(config.get("threads", 1))
        if threads != self.threads:
            self.remover = BackgroundRemover(self.model, self.model_home, threads=threads)
            self.threads = threads

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)
    async def remove_batch(
        self, images: list[np.ndarray], formats: list[str | None]
    ) -> list[Cutout]:
        return await asyncio.to_thread(self._remove_all, images, formats)

    def _remove_all(self, images: list[np.ndarray], formats: list[str | None]) -> list[Cutout]:
        cutouts = self.remover.remove_batch([Image.fromarray(a) for a in images])
        return [finish(c, fmt) for c, fmt in zip(cutouts, formats, strict=True)]

    @measured
    async def remove(self, image: np.ndarray, output_format: str | None = None) -> Cutout:
        """RGBA cut-out of ``image``: encoded when ``output_format`` is set, else pixels."""
        try:
            return await self.remove_batch(image, output_format)
        except Exception as exc:  # tagged, so the pipeline can tell which stage failed
            raise public_failure(exc, logger=log).error(Unprocessable, code=BG_FAILED) from exc
