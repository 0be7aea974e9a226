"""waifu2x ×2 super-resolution (ONNX, MIT) with tiled inference.

Both models take RGB float32 NCHW in [0, 1] and use unpadded convolutions: for an
``n x n`` input, upconv7 returns ``2n - 28`` and cunet ``2n - 72`` pixels, so each
input tile carries ``offset`` (7 or 18) pixels of edge-replicated or neighbouring
context on every side and its output covers exactly twice the tile's core.
cunet has stride-2 stages: its input sides must be even, and tiles start on even
coordinates or neighbouring tiles are computed in a different phase and disagree.
upconv7 is fully convolutional, so tiled output equals untiled output exactly.
cunet's squeeze-excitation blocks pool over the whole tile, so its output shifts
slightly with the tile's content; measured on text, that difference is spread
over the tile (no jump at tile borders), so tiles are not cross-faded.

Transparency: the colour of fully transparent pixels is first replaced by the
colour of the nearest visible pixels (push-pull fill), so the model never sees
the hidden background and cannot smear it into the edge. The alpha channel goes
through the model too, replicated to three channels in the same batch: a
cutout's visible edge *is* its alpha edge, and the model keeps it crisp and free
of the ringing halo Lanczos leaves on soft mask edges. It costs one more batch
item, and only for images whose alpha is not constant.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from visionserve.errors import UnknownModel
from visionserve.models.runtime import make_session
from visionserve.models.upscale.lanczos import check_scale, flatten, normalize_mode
from visionserve.models.weights import WeightError, weight_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Variant:
    file: str
    offset: int  # input pixels of context consumed on each side
    align: int  # tile sides and tile origins are multiples of this


VARIANTS = {
    "cunet": _Variant("waifu2x-cunet-scale2x.onnx", offset=18, align=2),
    "upconv7": _Variant("waifu2x-upconv7-scale2x.onnx", offset=7, align=1),
}


class Waifu2x:
    """waifu2x ×2 model; ×4 is two passes.

    Args:
        model_home: Directory holding the ``waifu2x-*-scale2x.onnx`` files.
        variant: ``"cunet"`` (sharper, about 2.5x slower on CPU) or ``"upconv7"``.
        tile: Largest tile side in input pixels (memory stays bounded by it).
        threads: Intra-op threads for onnxruntime (None: all cores).

    Raises:
        UnknownModel: An unknown variant.
        WeightError: The weight file is missing or not a waifu2x RGB model.
    """

    def __init__(
        self,
        model_home: Path,
        variant: str = "cunet",
        *,
        tile: int = 256,
        threads: int | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise UnknownModel(variant, list(VARIANTS))
        spec = VARIANTS[variant]
        path = weight_path(model_home, spec.file)
        self.name = f"waifu2x-{variant}"
        self._spec = spec
        self._tile = max(_round_up(tile, 4), 4)
        self._session = make_session(path, threads=threads)
        (inp,) = self._session.get_inputs()
        if len(inp.shape) != 4 or inp.shape[1] != 3:
            raise WeightError(f"{path} is not a waifu2x RGB model (input shape {inp.shape})")
        self._input = inp.name
        self.warm()

    def warm(self) -> None:
        """One small inference, so the first request does not pay for graph setup."""
        started = time.perf_counter()
        self.upscale(Image.new("RGB", (16, 16), (128, 128, 128)), 2)
        log.info("%s warmed in %.0f ms", self.name, (time.perf_counter() - started) * 1000)

    def upscale(self, img: Image.Image, scale: int, *, preserve_alpha: bool = True) -> Image.Image:
        """Upscale by 2 (one pass) or 4 (two passes).

        Args:
            img: Any Pillow image.
            scale: 2 or 4; the output is exactly ``(width * scale, height * scale)``.
            preserve_alpha: Keep transparency; when False the image is composited
                onto white first and the result is ``RGB``.

        Returns:
            An image in the input's normalized mode (``L``, ``RGB`` or ``RGBA``).

        Raises:
            BadRequest: ``scale`` is not 2 or 4.
        """
        check_scale(scale)
        img = normalize_mode(img) if preserve_alpha else flatten(img)
        rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        planes = [rgb]
        out_alpha: Image.Image | None = None
        if img.mode == "RGBA":
            alpha = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0
            planes = [_fill_transparent(rgb, alpha)]
            if alpha.min() == alpha.max():
                level = int(np.asarray(img.getchannel("A"))[0, 0])
                out_alpha = Image.new("L", (img.width * scale, img.height * scale), level)
            else:
                planes.append(np.dstack([alpha] * 3))
        x = np.stack([p.transpose(2, 0, 1) for p in planes])
        for _ in range(scale // 2):
            x = self._upscale2x(x)
        out = Image.fromarray(_to_uint8(x[0].transpose(1, 2, 0)), "RGB")
        if len(x) > 1:
            out_alpha = Image.fromarray(_to_uint8(x[1].mean(axis=0)), "L")
        if out_alpha is not None:
            out.putalpha(out_alpha)
        elif img.mode == "L":
            out = out.convert("L")
        return out

    def _upscale2x(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) in [0, 1] -> (N, 3, 2H, 2W), one tile at a time."""
        _, _, h, w = x.shape
        off, align = self._spec.offset, self._spec.align
        hp, wp = _round_up(h, align), _round_up(w, align)
        # Edge-replicate the context border, plus up to align-1 pixels to make the sides valid.
        padded = np.pad(x, ((0, 0), (0, 0), (off, off + hp - h), (off, off + wp - w)), mode="edge")
        out = np.empty((*x.shape[:2], 2 * hp, 2 * wp), dtype=np.float32)
        ys, th = self._tiles(hp)
        xs, tw = self._tiles(wp)
        for y in ys:
            for x0 in xs:
                # Neighbouring tiles overlap by 2 * offset input pixels of context.
                tile = padded[:, :, y : y + th + 2 * off, x0 : x0 + tw + 2 * off]
                (pred,) = self._session.run(None, {self._input: np.ascontiguousarray(tile)})
                out[:, :, 2 * y : 2 * (y + th), 2 * x0 : 2 * (x0 + tw)] = pred
        # upconv7 overshoots [0, 1] (about -0.5..1.5 on noise).
        return np.clip(out[:, :, : 2 * h, : 2 * w], 0.0, 1.0)

    def _tiles(self, side: int) -> tuple[list[int], int]:
        """Origins and the common size of the tiles along one (aligned) side.

        Equal tiles rather than full tiles plus a sliver: one input shape for the
        runtime, and no thin tile that is mostly padding. The last tile is moved
        back to end at the side, recomputing a few pixels instead of padding.
        """
        count = -(-side // self._tile)
        size = _round_up(-(-side // count), self._spec.align)
        return [min(i * size, side - size) for i in range(count)], size


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(x * 255.0).astype(np.uint8)


def _fill_transparent(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Give fully transparent pixels the colour of nearby visible ones (push-pull).

    An alpha-weighted pyramid is built down to one pixel; going back up, each
    transparent pixel takes the weighted average colour of the first coarser
    level where its block holds anything visible.
    """
    hidden = alpha <= 0
    if not hidden.any() or hidden.all():
        return rgb
    levels = [(rgb * alpha[..., None], alpha)]
    while levels[-1][1].shape != (1, 1):
        col, wt = levels[-1]
        h, w = wt.shape
        ph, pw = h % 2, w % 2
        col = np.pad(col, ((0, ph), (0, pw), (0, 0)))
        wt = np.pad(wt, ((0, ph), (0, pw)))
        h2, w2 = wt.shape[0] // 2, wt.shape[1] // 2
        levels.append(
            (
                col.reshape(h2, 2, w2, 2, 3).sum(axis=(1, 3)),
                wt.reshape(h2, 2, w2, 2).sum(axis=(1, 3)),
            )
        )
    fill: np.ndarray | None = None
    for col, wt in reversed(levels):
        mean = col / np.maximum(wt, 1e-12)[..., None]
        if fill is not None:
            up = fill.repeat(2, axis=0).repeat(2, axis=1)[: wt.shape[0], : wt.shape[1]]
            mean = np.where((wt > 0)[..., None], mean, up)
        fill = mean
    assert fill is not None
    return np.where(hidden[..., None], fill, rgb).astype(np.float32)
