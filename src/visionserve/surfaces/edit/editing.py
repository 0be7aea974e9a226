"""How one image is edited: the local plan, the generative backend, or an honest failure.

Shared by the edit deployment (single images) and the Ray Data batch (each actor
builds one :class:`Editor` with :class:`LocalModelOps`), so both decide alike:

* every clause of the prompt maps to a local operation: the plan runs locally;
* some clause does not and a generative backend is configured: the backend edits;
  when it answers a billing/quota error the local plan runs instead (the contract's
  ``fallback_local``), if the plan has any step;
* otherwise the edit fails with a message naming what the local engine can do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

from visionserve.errors import Unprocessable
from visionserve.models.edit import (
    GenerativeBackend,
    ModelOps,
    Plan,
    QuotaExceeded,
    capabilities,
    run_plan,
)
from visionserve.models.edit.engines import LocalEngines
from visionserve.platform.egress import EgressPolicy
from visionserve.platform.images import encode_image
from visionserve.settings import Settings
from visionserve.surfaces.edit.cos import MIME

log = logging.getLogger(__name__)

Route = Literal["local", "generative", "fallback_local"]
#: The contract's note for an image the local engine did after a billing error.
FALLBACK_NOTE = "OpenAI billing limit -> fallback local applied"


@dataclass
class Edited:
    """An encoded result and how it was made."""

    encoded: bytes
    format: str  # png | jpeg | webp
    width: int
    height: int
    route: Route
    applied: list[str] = field(default_factory=list)  # the operations that ran
    note: str | None = None

    @property
    def mime_type(self) -> str:
        return MIME[self.format]


def uncovered(plan: Plan) -> Unprocessable:
    """The failure for a prompt the local engine cannot do (no generative backend)."""
    clauses = "; ".join(repr(c) for c in plan.unsupported) or "(empty prompt)"
    return Unprocessable(
        f"No local operation matches {clauses} and no generative backend is configured. "
        f"The local engine can: {', '.join(capabilities())}",
        code="unsupported_prompt",
    )


def upscale_method(settings: Settings) -> str:
    """``edit.upscale_method`` when its weights are there, else Lanczos."""
    from visionserve.models.upscale import available_upscalers

    wanted = settings.edit.upscale_method
    return wanted if wanted in available_upscalers(settings.model_dir) else "lanczos"


def generative_backend(settings: Settings) -> GenerativeBackend | None:
    """The configured image edit API, or None."""
    g = settings.edit.generative
    if not g.base_url:
        return None
    egress = EgressPolicy(settings.egress)  # the API's URL passes the policy like any other
    return GenerativeBackend(g.base_url, g.api_key, g.model, g.timeout_s, egress=egress)


def check_plan(plan: Plan, generative: GenerativeBackend | None) -> None:
    """Refuse, before any image is touched, a plan that cannot produce anything."""
    if not plan.steps and not plan.unsupported:
        raise Unprocessable(
            f"The prompt asks for no edit. The local engine can: {', '.join(capabilities())}",
            code="unsupported_prompt",
        )
    if plan.unsupported and generative is None:
        raise uncovered(plan)


class Editor:
    """Applies a plan to images with one set of models and one optional backend."""

    def __init__(
        self,
        models: ModelOps,
        *,
        max_output_pixels: int,
        generative: GenerativeBackend | None = None,
        engines: LocalEngines | None = None,
    ) -> None:
        self.models = models
        self.max_output_pixels = max_output_pixels
        self.generative = generative
        self.engines = engines  # style, faces, OCR; None: the model home's shared ones

    async def edit(self, plan: Plan, prompt: str, image: Image.Image) -> Edited:
        """Edit ``image`` as ``plan`` (from ``prompt``) says; see the module docstring.

        Raises:
            Unprocessable: The prompt is not covered (see :func:`check_plan`), or the
                backend's quota is spent and no local step applies.
            VisionServeError: Whatever the engine or the backend raised (public).
        """
        check_plan(plan, self.generative)
        if plan.unsupported and self.generative is not None:
            try:
                out = await self.generative.edit(image, prompt)
            except QuotaExceeded:
                if not plan.steps:
                    raise Unprocessable(
                        "The generative backend's billing limit is reached and no local "
                        f"operation matches this prompt. The local engine can: "
                        f"{', '.join(capabilities())}",
                        code="quota_exceeded",
                    ) from None
                log.info("generative backend over quota: running the local plan")
                return await self._local(plan, image, "fallback_local", FALLBACK_NOTE)
            return _encoded(out, _format_of(image, out), "generative", ["generative_edit"])
        return await self._local(plan, image, "local", None)

    async def _local(
        self, plan: Plan, image: Image.Image, route: Route, note: str | None
    ) -> Edited:
        result = await run_plan(
            plan,
            image,
            self.models,
            max_output_pixels=self.max_output_pixels,
            engines=self.engines,
        )
        applied = [s.op for s in result.applied]
        return _encoded(result.image, result.format, route, applied, note)


def _format_of(source: Image.Image, out: Image.Image) -> str:
    """PNG unless the source was a JPEG without alpha (keep a photo a photo)."""
    if source.format == "JPEG" and out.mode not in ("RGBA", "LA"):
        return "jpeg"
    return "png"


def _encoded(
    img: Image.Image, fmt: str, route: Route, applied: list[str], note: str | None = None
) -> Edited:
    fmt = fmt if fmt in MIME else "png"
    data = encode_image(img, fmt)  # type: ignore[arg-type]
    return Edited(data, fmt, img.width, img.height, route, applied, note)
