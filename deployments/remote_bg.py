"""Remote background-removal providers (Runware, Kie.ai) as deployments: remote-<model_id>.

Bound only when the provider's API key is set. I/O bound, so a sliver of a CPU.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import numpy as np
from PIL import Image
from ray import serve

from deployments.bg_removal import BG_FAILED, finish
from deployments.common import HEALTH, IO_CPUS, autoscaling
from deployments.metrics import measured
from visionserve.errors import Unprocessable, public_failure
from visionserve.models.cutout import Cutout
from visionserve.models.providers import build_providers
from visionserve.platform.images import encode_image, open_image
from visionserve.platform.logging import configure_logging
from visionserve.settings import settings_from
from visionserve.store.blobs import make_blob_store

log = logging.getLogger(__name__)


@serve.deployment(
    ray_actor_options={"num_cpus": IO_CPUS},
    autoscaling_config=autoscaling(16),
    max_ongoing_requests=32,
    max_queued_requests=64,
    **HEALTH,
)
class RemoteBackgroundRemoval:
    """One provider model; same ``remove`` interface as the local models."""

    def __init__(self, model_id: str, settings: dict[str, Any], timeout_s: float = 30.0) -> None:
        configure_logging()
        resolved = settings_from(settings)
        publish = None
        if resolved.blobs.backend == "s3":
            # Providers that need a URL (Kie.ai) fetch the input from a presigned S3 URL;
            # a local blob URL (127.0.0.1) is unreachable for them, so they upload instead.
            blobs = make_blob_store(resolved)

            async def publish(image_png: bytes) -> str:
                key = f"cutout/provider-inputs/{uuid.uuid4()}.png"
                await asyncio.to_thread(blobs.put, key, image_png, "image/png")
                return await asyncio.to_thread(blobs.url, key, 900)

        self.provider = build_providers(resolved, publish=publish)[model_id]
        self.max_pixels = resolved.limits.max_image_pixels
        self.timeout_s = timeout_s

    @measured
    async def remove(self, image: np.ndarray, output_format: str | None = None) -> Cutout:
        try:
            png = await asyncio.to_thread(encode_image, Image.fromarray(image), "png")
            result = await self.provider.remove(png, timeout_s=self.timeout_s)
            cutout = await asyncio.to_thread(open_image, result.image, max_pixels=self.max_pixels)
            return await asyncio.to_thread(
                finish, cutout.convert("RGBA"), output_format, result.cost_usd
            )
        except Exception as exc:  # a provider's own errors keep their (scrubbed) message
            raise public_failure(exc, logger=log).error(Unprocessable, code=BG_FAILED) from exc
