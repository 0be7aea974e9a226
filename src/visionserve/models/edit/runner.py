"""Run a plan on an image: pure operations in a worker thread, model operations awaited.

Model operations (the subject mask for background work, waifu2x upscaling) go
through :class:`ModelOps`, which the ingress backs with Serve deployment handles and
the batch job and tests back with :class:`LocalModelOps`. The output size of every
step is computed from the plan before any pixel is touched, so a plan that would
grow past ``max_output_pixels`` is refused up front.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from PIL import Image

from visionserve.errors import PayloadTooLarge, Unprocessable
from visionserve.models.edit.catalogue import (
    CropParams,
    PadParams,
    ResizeParams,
    RotateParams,
    UpscaleParams,
    typed_params,
)
from visionserve.models.edit.engines import LocalEngines, local_engines
from visionserve.models.edit.ops import background, geometry, text, tone
from visionserve.models.edit.ops.faces import anonymize
from visionserve.models.edit.plan import Plan, Step

if TYPE_CHECKING:
    from visionserve.models.bg_removal import BackgroundRemover
    from visionserve.models.upscale import Upscaler

log = logging.getLogger(__name__)

OutputFormat = Literal["png", "jpeg", "webp"]
#: Operations that need the subject mask.
MASK_OPS = frozenset({"remove_background", "replace_background", "blur_background"})


class ModelOps(Protocol):
    """What the runner needs from deployed models."""

    async def subject_mask(self, image: Image.Image) -> Image.Image:
        """The subject mask (L, same size, 255 = subject) from a bg-removal model."""
        ...

    async def upscale(self, image: Image.Image, factor: int) -> Image.Image:
        """``image`` upscaled ×``factor`` (2 or 4) by waifu2x, alpha kept."""
        ...


class LocalModelOps:
    """:class:`ModelOps` on the same model classes the deployments use, in this process.

    Args:
        model_home: Directory holding the weights.
        bg_model: A bg-removal registry name (``u2netp``, ``u2net``, ...).
        upscaler: An upscale registry name.
        threads: Intra-op threads for the ONNX models (None: all cores).
    """

    def __init__(
        self,
        model_home: Path,
        bg_model: str = "u2netp",
        *,
        upscaler: str = "waifu2x-upconv7",
        threads: int | None = None,
    ) -> None:
        self.model_home = Path(model_home)
        self.bg_model = bg_model
        self.upscaler_name = upscaler
        self.threads = threads
        self._remover: BackgroundRemover | None = None
        self._upscaler: Upscaler | None = None
        # A thread lock, not an asyncio one: the batch runs each image in its own
        # event loop (asyncio.run), and loading happens in a worker thread anyway.
        self._lock = threading.Lock()

    def _get_remover(self) -> BackgroundRemover:
        from visionserve.models.bg_removal import BackgroundRemover

        with self._lock:
            if self._remover is None:
                self._remover = BackgroundRemover(
                    self.bg_model, self.model_home, threads=self.threads
                )
            return self._remover

    def _get_upscaler(self) -> Upscaler:
        from visionserve.models.upscale import get_upscaler

        with self._lock:
            if self._upscaler is None:
                self._upscaler = get_upscaler(
                    self.upscaler_name, self.model_home, threads=self.threads
                )
            return self._upscaler

    async def subject_mask(self, image: Image.Image) -> Image.Image:
        remover = await asyncio.to_thread(self._get_remover)
        return await asyncio.to_thread(remover.mask, image)

    async def upscale(self, image: Image.Image, factor: int) -> Image.Image:
        upscaler = await asyncio.to_thread(self._get_upscaler)
        return await asyncio.to_thread(upscaler.upscale, image, factor)


@dataclass
class EditResult:
    """The edited image, the format to encode it in and the steps that ran."""

    image: Image.Image
    format: OutputFormat = "png"
    applied: list[Step] = field(default_factory=list)
    quality: int = 90  # for the lossy formats


def planned_sizes(plan: Plan, width: int, height: int) -> list[tuple[int, int]]:
    """The image size after each step (an upper bound for crops to the subject)."""
    sizes = []
    w, h = width, height
    for step in plan.steps:
        params = typed_params(step.op, step.params)
        if isinstance(params, RotateParams):
            w, h = geometry.rotated_size(w, h, params)
        elif isinstance(params, ResizeParams):
            w, h = geometry.resized_size(w, h, params)
        elif isinstance(params, UpscaleParams):
            w, h = w * params.factor, h * params.factor
        elif isinstance(params, PadParams):
            w, h = geometry.padded_size(w, h, params)
        elif isinstance(params, CropParams):
            x0, y0, x1, y1 = (
                (0, 0, w, h) if params.mode == "subject" else geometry.crop_box(w, h, params)
            )
            w, h = x1 - x0, y1 - y0
        sizes.append((w, h))
    return sizes


def check_plan_size(plan: Plan, width: int, height: int, max_output_pixels: int) -> None:
    """Refuse a plan any of whose steps would exceed ``max_output_pixels``.

    Raises:
        PayloadTooLarge: The first step over the limit, with the sizes in ``details``.
    """
    for step, (w, h) in zip(plan.steps, planned_sizes(plan, width, height), strict=True):
        if w * h > max_output_pixels:
            raise PayloadTooLarge(
                f"The {step.op} step would make a {w}x{h} image ({w * h} pixels); the limit is "
                f"{max_output_pixels} pixels. Ask for a smaller size or send a smaller image",
                details={
                    "op": step.op,
                    "width": w,
                    "height": h,
                    "max_output_pixels": max_output_pixels,
                },
            )


async def run_plan(
    plan: Plan,
    image: Image.Image,
    models: ModelOps,
    *,
    max_output_pixels: int,
    engines: LocalEngines | None = None,
) -> EditResult:
    """Apply the plan's steps in order.

    Args:
        plan: A validated plan.
        image: The decoded input.
        models: The bg-removal and upscale models.
        max_output_pixels: The largest image any step may produce.
        engines: The style, face and OCR models (default: those of the model home
            ``models`` has, when it is a :class:`LocalModelOps`).

    Returns:
        The result; ``format`` is the last format step's, else PNG.

    Raises:
        PayloadTooLarge: A step would exceed ``max_output_pixels`` (before any work).
        Unprocessable: A plan with no steps, or one a local model cannot run.
    """
    if not plan.steps:
        raise Unprocessable("The plan has no operations to run")
    check_plan_size(plan, image.width, image.height, max_output_pixels)
    img = image
    fmt: OutputFormat = "png"
    quality = 90
    applied: list[Step] = []
    for step in plan.steps:
        params = typed_params(step.op, step.params)
        op = step.op
        if op in MASK_OPS or (op == "crop" and params.mode == "subject"):
            mask = (await models.subject_mask(img)).convert("L")
            if mask.size != img.size:  # a deployment may answer at its own resolution
                mask = mask.resize(img.size, Image.Resampling.BILINEAR)
            if op == "remove_background":
                img = await asyncio.to_thread(background.remove_background, img, mask)
            elif op == "replace_background":
                img = await asyncio.to_thread(background.replace_background, img, mask, params)
            elif op == "blur_background":
                img = await asyncio.to_thread(background.blur_background, img, mask, params)
            else:
                img = await asyncio.to_thread(geometry.crop, img, params, mask)
        elif op == "upscale":
            img = await models.upscale(img, params.factor)
        elif op == "format":
            fmt, quality = params.format, params.quality
        elif op in _TONE:
            img = await asyncio.to_thread(_TONE[op], img, params)
        else:
            local = engines or _engines_of(models)
            img = await asyncio.to_thread(_with_engines, op, params, img, local)
        applied.append(step)
    return EditResult(image=img, format=fmt, applied=applied, quality=quality)


def _engines_of(models: ModelOps) -> LocalEngines:
    home = getattr(models, "model_home", None)
    if home is None:
        raise Unprocessable("No local models are configured for style, faces or text removal")
    return local_engines(Path(home))


#: Operations that need no model: name -> function(image, params).
_TONE: dict[str, Callable[[Image.Image, Any], Image.Image]] = {
    "brightness": tone.brightness,
    "contrast": tone.contrast,
    "saturation": tone.saturation,
    "temperature": tone.temperature,
    "sharpen": tone.sharpen,
    "blur": tone.blur,
    "denoise": tone.denoise,
    "auto_enhance": tone.auto_enhance,
    "grayscale": tone.grayscale,
    "sepia": tone.sepia,
    "invert": tone.invert,
    "rotate": geometry.rotate,
    "flip": geometry.flip,
    "crop": geometry.crop,
    "resize": geometry.resize,
    "pad": geometry.pad,
    "watermark": text.watermark,
}


def _with_engines(op: str, params: Any, img: Image.Image, engines: LocalEngines) -> Image.Image:
    """An operation on a local model (runs in a worker thread)."""
    if op == "style":
        return engines.style().stylize(img, params)
    if op == "faces":
        return anonymize(img, engines.faces().detect(img), params)
    if op == "remove_text":
        return text.inpaint(img, text.text_mask(img, engines.ocr()))
    raise Unprocessable(f"no local implementation of {op!r}")
