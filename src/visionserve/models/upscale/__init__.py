"""Upscaling models behind one registry of stable kebab-case names.

Usage::

    up = get_upscaler("waifu2x-cunet", settings.model_home)  # loads and warms now
    big = up.upscale(img, 4)  # exactly (4w, 4h), alpha kept
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Protocol

from PIL import Image

from visionserve.errors import UnknownModel
from visionserve.models.upscale.lanczos import SCALES, LanczosUpscaler, upscale_lanczos
from visionserve.models.upscale.waifu2x import VARIANTS, Waifu2x


class Upscaler(Protocol):
    """What every registry entry builds."""

    name: str

    def warm(self) -> None: ...

    def upscale(
        self, img: Image.Image, scale: int, *, preserve_alpha: bool = True
    ) -> Image.Image: ...


def _lanczos(model_home: Path, *, threads: int | None = None) -> Upscaler:
    return LanczosUpscaler()


#: Method name -> factory taking the model home (and ``threads`` for ONNX models).
UPSCALERS: dict[str, Callable[..., Upscaler]] = {
    "lanczos": _lanczos,
    "waifu2x-cunet": partial(Waifu2x, variant="cunet"),
    "waifu2x-upconv7": partial(Waifu2x, variant="upconv7"),
}


def available_upscalers(model_home: Path) -> list[str]:
    """The registered methods whose weight files are in ``model_home``, sorted.

    Lanczos needs none. Only checks that the files exist (nothing is loaded), so the
    app builder can say which methods the cluster offers before any replica starts.
    """
    found = ["lanczos"]
    for variant, spec in VARIANTS.items():
        if (Path(model_home) / spec.file).is_file():
            found.append(f"waifu2x-{variant}")
    return sorted(m for m in found if m in UPSCALERS)


def get_upscaler(method: str, model_home: Path, *, threads: int | None = None) -> Upscaler:
    """Build the upscaler registered as ``method``, loading its weights now.

    Args:
        method: A key of :data:`UPSCALERS`.
        model_home: Directory holding the weight files.
        threads: Intra-op threads for ONNX models (None: all cores).

    Returns:
        An object with ``.name``, ``.warm()`` and
        ``.upscale(img, scale, *, preserve_alpha=True)``.

    Raises:
        UnknownModel: ``method`` is not registered; the message lists the valid names.
        WeightError: The weight file is missing (the message says how to fetch it).
    """
    try:
        factory = UPSCALERS[method]
    except KeyError:
        raise UnknownModel(method, list(UPSCALERS)) from None
    return factory(model_home, threads=threads)


__all__ = [
    "SCALES",
    "UPSCALERS",
    "LanczosUpscaler",
    "Upscaler",
    "Waifu2x",
    "available_upscalers",
    "get_upscaler",
    "upscale_lanczos",
]
