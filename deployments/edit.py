"""Prompt-driven edits: the planner (MiniLM), style/face/OCR models, and the runner.

Thin: it owns the pure :class:`~visionserve.surfaces.edit.editing.Editor`, whose
model operations await the bg-removal and upscale deployments the cutout surface
uses too (bound once in graphs/app.py), so an edit's background removal runs on the
same replicas, batched with cutout's requests.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

import numpy as np
from PIL import Image
from ray import serve

from deployments.common import HEALTH, GiB, autoscaling, model_cpus
from deployments.metrics import measured
from visionserve.models.cutout import Cutout
from visionserve.models.edit import LlmPlanner, Plan, Planner
from visionserve.models.edit.engines import LocalEngines
from visionserve.models.embedding import Embedder
from visionserve.platform.egress import EgressPolicy
from visionserve.platform.images import load_image
from visionserve.platform.llm import LlmClient
from visionserve.platform.logging import configure_logging
from visionserve.settings import settings_from
from visionserve.surfaces.edit.editing import Edited, Editor, generative_backend

log = logging.getLogger(__name__)


class HandleModelOps:
    """``ModelOps`` over Serve handles: bg-<model>.remove and upscale.upscale."""

    def __init__(self, remover: Any, upscaler: Any, method: str) -> None:
        self.remover, self.upscaler, self.method = remover, upscaler, method

    async def subject_mask(self, image: Image.Image) -> Image.Image:
        cutout: Cutout = await self.remover.remove.remote(np.asarray(image.convert("RGB")), None)
        assert cutout.pixels is not None
        return Image.fromarray(np.ascontiguousarray(cutout.pixels[:, :, 3]), mode="L")

    async def upscale(self, image: Image.Image, factor: int) -> Image.Image:
        has_alpha = image.mode in ("RGBA", "LA")
        pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
        out: Cutout = await self.upscaler.upscale.remote(pixels, factor, self.method, None, True)
        assert out.pixels is not None
        return Image.fromarray(out.pixels if has_alpha else out.pixels[:, :, :3])


@serve.deployment(
    name="edit",
    # MiniLM (~90 MB) at start; the style and face ONNX models and OCR on first use.
    # Its pure operations run in threads here; the CPU reservation is a share of the
    # one-machine cluster, where the Serve replicas together reserve under 2 CPUs.
    ray_actor_options={"num_cpus": model_cpus(), "memory": 3 * GiB // 2},
    autoscaling_config=autoscaling(4),
    max_ongoing_requests=8,
    max_queued_requests=64,
    user_config={"threads": 1},
    **HEALTH,
    graceful_shutdown_timeout_s=30,
)
class Edit:
    """Plans prompts and runs plans; ``edit`` takes encoded bytes and returns encoded bytes."""

    def __init__(
        self, settings: dict[str, Any], remover: Any, upscaler: Any, upscale_method: str
    ) -> None:
        configure_logging()
        self.settings = settings_from(settings)
        rules = Planner(Embedder())
        llm = self.settings.edit.planner_llm
        self.planner: Planner | LlmPlanner = (
            LlmPlanner(LlmClient(llm, EgressPolicy(self.settings.egress)), rules)
            if llm.base_url
            else rules
        )
        self.models = HandleModelOps(remover, upscaler, upscale_method)
        self.threads = 1
        self.editor = self._editor()
        rules.plan("make it brighter")  # warm: MiniLM's first call pays for graph setup

    def _editor(self) -> Editor:
        return Editor(
            self.models,
            max_output_pixels=self.settings.limits.max_output_pixels,
            generative=generative_backend(self.settings),
            engines=LocalEngines(self.settings.model_dir, threads=self.threads),
        )

    def reconfigure(self, config: dict[str, Any]) -> None:
        threads = int(config.get("threads", 1))
        if threads != self.threads:
            self.threads = threads
            self.editor = self._editor()

    @measured
    async def plan(self, prompt: str) -> dict[str, Any]:
        """The validated plan of ``prompt`` (steps and unsupported clauses)."""
        plan = await self._plan(prompt)
        return plan.model_dump(mode="json")

    async def _plan(self, prompt: str) -> Plan:
        # MiniLM runs in a thread; the LLM planner's plan is a coroutine (HTTP).
        result: Any = await asyncio.to_thread(self.planner.plan, prompt)
        if inspect.isawaitable(result):
            result = await result
        return Plan.model_validate(result)

    @measured
    async def edit(self, data: bytes, prompt: str) -> Edited:
        """Decode ``data`` (a clear 4xx when it is no image), plan, edit, encode."""
        image = await asyncio.to_thread(load_image, data, self.settings)
        plan = await self._plan(prompt)
        return await self.editor.edit(plan, prompt, image)
