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

Memory: tiles go straight into the output (8-bit for the last pass, float32 only for
the intermediate x2 of a x4), so a request holds about 10 bytes per output pixel plus
onnxruntime's arena for one tile (0.25 GB upconv7, 0.4 GB cunet), which is given back
after each pass. Measured x4 with alpha: +0.28 GB at 4 MP and +0.41 GB at 16 MP
(upconv7), where the untiled buffers held +1 GB at 4 MP and kept 0.8 GB afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
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
        # Passed to the last run of a pass: onnxruntime then gives back the arena
        # memory that the pass's tiles grew (about 0.4 GB for a cunet tile).
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
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
        level: int | None = None  # a constant alpha, kept as is
        if img.mode == "RGBA":
            alpha = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0
            planes = [_fill_transparent(rgb, alpha)]
            if alpha.min() == alpha.max():
                level = int(np.asarray(img.getchannel("A"))[0, 0])
            else:
                planes.append(np.dstack([alpha] * 3))
        x = np.stack([p.transpose(2, 0, 1) for p in planes])
        del rgb, planes
        for _ in range(scale // 2 - 1):
            # Intermediate passes stay float32: the next pass reads them as they are.
            big = np.empty((*x.shape[:2], 2 * x.shape[2], 2 * x.shape[3]), dtype=np.float32)
            self._upscale2x(x, partial(_store, big))
            x = big
        # The last pass writes 8-bit pixels straight into the output image's buffer.
        out = np.empty(
            (2 * x.shape[2], 2 * x.shape[3], 4 if img.mode == "RGBA" else 3), dtype=np.uint8
        )
        if level is not None:
            out[..., 3] = level
        self._upscale2x(x, partial(_store_uint8, out))
        result = Image.fromarray(out, "RGBA" if img.mode == "RGBA" else "RGB")
        return result.convert("L") if img.mode == "L" else result

    def _upscale2x(self, x: np.ndarray, store: Callable[[int, int, np.ndarray], None]) -> None:
        """(N, 3, H, W) in [0, 1] -> (N, 3, 2H, 2W) in [0, 1], one tile at a time.

        Each output tile goes to ``store(top, left, tile)`` as soon as it is computed,
        so nothing of the image's size is held but ``x`` and the caller's output. A
        tile's input (with its context, edge-replicated at the image's borders) is cut
        from ``x`` by index, never from a padded copy of the whole image. Batch items
        run one at a time: onnxruntime's arena then grows to one item's activations,
        and it is shrunk after the pass's last tile, so a large request leaves no
        arena behind.
        """
        _, _, h, w = x.shape
        off, align = self._spec.offset, self._spec.align
        hp, wp = _round_up(h, align), _round_up(w, align)
        ys, th = self._tiles(hp)
        xs, tw = self._tiles(wp)
        last = (ys[-1], xs[-1])
        for y in ys:
            rows = np.clip(np.arange(y - off, y + th + off), 0, h - 1)[:, None]
            for x0 in xs:
                # Neighbouring tiles overlap by 2 * offset input pixels of context.
                cols = np.clip(np.arange(x0 - off, x0 + tw + off), 0, w - 1)[None, :]
                tile = x[:, :, rows, cols]
                options = self._shrink if (y, x0) == last else None
                pred = np.concatenate(
                    [
                        self._session.run(
                            None, {self._input: np.ascontiguousarray(tile[i : i + 1])}, options
                        )[0]
                        for i in range(len(tile))
                    ]
                )
                # upconv7 overshoots [0, 1] (about -0.5..1.5 on noise); the aligned
                # sides may add a row or column past the image.
                pred = np.clip(pred[:, :, : 2 * h - 2 * y, : 2 * w - 2 * x0], 0.0, 1.0)
                store(2 * y, 2 * x0, pred)

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


def _store(out: np.ndarray, top: int, left: int, tile: np.ndarray) -> None:
    """Write a float tile into an (N, 3, H, W) float32 array."""
    _, _, th, tw = tile.shape
    out[:, :, top : top + th, left : left + tw] = tile


def _store_uint8(out: np.ndarray, top: int, left: int, tile: np.ndarray) -> None:
    """Write a tile into an (H, W, 3 or 4) uint8 image: RGB from item 0, alpha from item 1.

    The alpha plane went through the model as three equal channels; their mean is
    the alpha. A constant alpha (one item) leaves the output's alpha as the caller set it.
    """
    _, _, th, tw = tile.shape
    region = out[top : top + th, left : left + tw]
    region[..., :3] = _to_uint8(tile[0].transpose(1, 2, 0))
    if len(tile) > 1:
        region[..., 3] = _to_uint8(tile[1].mean(axis=0))


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
