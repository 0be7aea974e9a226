"""Upscaling: Lanczos (premultiplied alpha) and waifu2x ONNX, one deployment.

An upscale's output is ``scale**2`` times its input, so every request's output size is
checked against ``limits.max_output_pixels`` before any pixel is touched, the outputs
in flight share one budget of that size, and memory freed by a large request is given
back to the system (glibc would keep it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
from PIL import Image
from ray import serve

from deployments.bg_removal import finish
from deployments.common import HEALTH, GiB, autoscaling, model_cpus
from deployments.metrics import measured
from visionserve.errors import Unprocessable, VisionServeError, public_failure
from visionserve.models.cutout import Cutout
from visionserve.models.upscale import UPSCALERS, Upscaler, get_upscaler
from visionserve.models.upscale.limits import (
    RELEASE_AFTER_PIXELS,
    PixelBudget,
    check_output_size,
    release_memory,
)
from visionserve.models.weights import WeightError
from visionserve.platform.images import encode_image
from visionserve.platform.logging import configure_logging
from visionserve.settings import settings_from

log = logging.getLogger(__name__)

UPSCALE_FAILED = "upscale_failed"


@serve.deployment(
    name="upscale",
    # Measured: 0.37 GB at rest (both waifu2x models loaded); a request at
    # limits.max_output_pixels adds up to about 0.8 GB (waifu2x-cunet x4 with alpha) and
    # its PNG, and the pixel budget lets only one such request run at a time.
    ray_actor_options={"num_cpus": model_cpus(), "memory": 3 * GiB // 2},
    autoscaling_config=autoscaling(4),
    max_ongoing_requests=16,
    max_queued_requests=64,
    user_config={"threads": 1},
    **HEALTH,
    graceful_shutdown_timeout_s=20,
)
class Upscale:
    """Owns the upscalers the app builder enabled (Lanczos needs no weights).

    Args:
        settings: The resolved settings snapshot.
        methods: The methods to serve, as the builder announced them to the ingress:
            a missing weight among them fails the replica at start. None: every
            registered method whose weights are present.
    """

    def __init__(self, settings: dict[str, Any], methods: list[str] | None = None) -> None:
        configure_logging()
        resolved = settings_from(settings)
        self.model_home = resolved.model_home
        self.max_output_pixels = resolved.limits.max_output_pixels
        # At most one output at the limit in flight; smaller ones share the budget.
        self.budget = PixelBudget(self.max_output_pixels)
        self.methods = methods
        self.threads = 1
        self.upscalers = self._load()

    def _load(self) -> dict[str, Upscaler]:
        loaded: dict[str, Upscaler] = {}
        for method in self.methods if self.methods is not None else UPSCALERS:
            try:
                loaded[method] = get_upscaler(method, self.model_home, threads=self.threads)
            except WeightError:
                if self.methods is not None:
                    raise  # announced as available: a clear start-up error
                continue  # not offered; asking for it gives a clear error
        return loaded

    def reconfigure(self, config: dict[str, Any]) -> None:
        threads = int(config.get("threads", 1))
        if threads != self.threads:
            self.threads = threads
            self.upscalers = self._load()

    async def methods(self) -> list[str]:
        return sorted(self.upscalers)

    @measured
    async def upscale(
        self,
        source: Cutout | np.ndarray,
        scale: int,
        method: str,
        output_format: str,
        preserve_alpha: bool = True,
    ) -> Cutout:
        """Upscale pixels (or a cut-out from a previous stage) and encode the result."""
        upscaler = self.upscalers.get(method)
        if upscaler is None:
            valid = ", ".join(sorted(self.upscalers))
            raise Unprocessable(
                f"Upscale method {method!r} is not available; choose one of: {valid}",
                code="validation_error",
            )
        cost = source.cost_usd if isinstance(source, Cutout) else 0.0
        pixels = source.pixels if isinstance(source, Cutout) else source
        if pixels is None:
            raise Unprocessable("nothing to upscale", code=UPSCALE_FAILED)
        height, width = pixels.shape[:2]
        # Before any work: the ingress checks too, but not every caller is the ingress.
        out_pixels = check_output_size(width, height, scale, self.max_output_pixels)
        try:
            async with self.budget.hold(out_pixels):
                return await asyncio.to_thread(
                    _upscale, upscaler, pixels, scale, preserve_alpha, output_format, cost
                )
        except VisionServeError:
            raise
        except Exception as exc:
            failure = public_failure(exc, logger=log)
            raise failure.error(Unprocessable, code=UPSCALE_FAILED) from exc
        finally:
            if out_pixels >= RELEASE_AFTER_PIXELS:
                await asyncio.to_thread(release_memory)


def _upscale(
    upscaler: Upscaler,
    pixels: np.ndarray,
    scale: int,
    preserve_alpha: bool,
    output_format: str | None,
    cost: float,
) -> Cutout:
    """Upscale and encode in one go, so the full-size image dies before memory is trimmed."""
    big = upscaler.upscale(Image.fromarray(pixels), scale, preserve_alpha=preserve_alpha)
    if not output_format:  # a later stage takes the pixels
        return finish(big, None, cost)
    # The last stage: encode straight from the image, without finish()'s pixel copy.
    return Cutout(
        encoded=encode_image(big, output_format),  # type: ignore[arg-type]
        cost_usd=cost,
        width=big.width,
        height=big.height,
    )
