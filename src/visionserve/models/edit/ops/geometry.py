"""Geometry: rotate, flip, crop, resize, pad, and the output size each one gives."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageColor, ImageOps

from visionserve.models.edit.catalogue import (
    CropParams,
    FlipParams,
    PadParams,
    ResizeParams,
    RotateParams,
)


def _fill(img: Image.Image, colour: str = "white") -> tuple[int, ...]:
    """The fill for new pixels: transparent on images with alpha, else ``colour``."""
    if img.mode == "RGBA":
        return (0, 0, 0, 0)
    return ImageColor.getrgb(colour)[:3]


def _normal_mode(img: Image.Image) -> Image.Image:
    if img.mode in ("RGB", "RGBA"):
        return img
    has_alpha = img.mode in ("LA", "PA") or "transparency" in img.info
    return img.convert("RGBA" if has_alpha else "RGB")


def rotated_size(w: int, h: int, p: RotateParams) -> tuple[int, int]:
    """The size ``rotate`` gives: Pillow's own arithmetic for ``expand``, to the pixel."""
    if not p.expand:
        return w, h
    if p.degrees % 90 == 0:
        return (h, w) if p.degrees % 180 else (w, h)
    angle = math.radians(p.degrees)  # Pillow turns by -degrees, i.e. -(-angle)
    a, b = round(math.cos(angle), 15), round(math.sin(angle), 15)
    d, e = -b, a
    cx, cy = w / 2.0, h / 2.0
    c = a * -cx + b * -cy + cx
    f = d * -cx + e * -cy + cy
    xs = [a * x + b * y + c for x, y in ((0, 0), (w, 0), (w, h), (0, h))]
    ys = [d * x + e * y + f for x, y in ((0, 0), (w, 0), (w, h), (0, h))]
    return (
        math.ceil(max(xs)) - math.floor(min(xs)),
        math.ceil(max(ys)) - math.floor(min(ys)),
    )


def rotate(img: Image.Image, p: RotateParams) -> Image.Image:
    img = _normal_mode(img)
    quarter = p.degrees % 90 == 0
    if quarter and p.expand:
        turns = int(p.degrees // 90) % 4  # clockwise quarter turns
        methods = {
            1: Image.Transpose.ROTATE_270,
            2: Image.Transpose.ROTATE_180,
            3: Image.Transpose.ROTATE_90,
        }
        return img.transpose(methods[turns]) if turns else img.copy()
    # Pillow turns counter-clockwise; the catalogue's degrees are clockwise.
    return img.rotate(
        -p.degrees, resample=Image.Resampling.BICUBIC, expand=p.expand, fillcolor=_fill(img)
    )


def flip(img: Image.Image, p: FlipParams) -> Image.Image:
    return ImageOps.mirror(img) if p.direction == "horizontal" else ImageOps.flip(img)


def resized_size(w: int, h: int, p: ResizeParams) -> tuple[int, int]:
    if p.width and p.height:
        return p.width, p.height
    if p.width:
        return p.width, max(1, round(h * p.width / w))
    if p.height:
        return max(1, round(w * p.height / h)), p.height
    f = p.factor or 1.0
    return max(1, round(w * f)), max(1, round(h * f))


def resize(img: Image.Image, p: ResizeParams) -> Image.Image:
    size = resized_size(img.width, img.height, p)
    if size == img.size:
        return img.copy()
    return _normal_mode(img).resize(size, Image.Resampling.LANCZOS)


def padded_size(w: int, h: int, p: PadParams) -> tuple[int, int]:
    if p.aspect:
        aw, ah = p.aspect
        if w * ah >= h * aw:  # too wide: grow the height
            return w, max(h, math.ceil(w * ah / aw))
        return max(w, math.ceil(h * aw / ah)), h
    px = p.pixels or 0
    return w + 2 * px, h + 2 * px


def pad(img: Image.Image, p: PadParams) -> Image.Image:
    img = _normal_mode(img)
    w, h = padded_size(img.width, img.height, p)
    fill = ImageColor.getrgb(p.color)
    canvas = Image.new(img.mode, (w, h), fill if img.mode == "RGBA" else fill[:3])
    canvas.paste(img, ((w - img.width) // 2, (h - img.height) // 2))
    return canvas


def crop_box(
    w: int, h: int, p: CropParams, mask: Image.Image | None = None
) -> tuple[int, int, int, int]:
    """The box ``crop`` cuts; ``mask`` (L, 255 = subject) is needed for ``subject``."""
    if p.mode == "size" and p.width and p.height:
        cw, ch = min(w, p.width), min(h, p.height)
        left, top = (w - cw) // 2, (h - ch) // 2
        return left, top, left + cw, top + ch
    if p.mode == "aspect" and p.aspect:
        aw, ah = p.aspect
        if w * ah > h * aw:
            cw = max(1, round(h * aw / ah))
            left = (w - cw) // 2
            return left, 0, left + cw, h
        ch = max(1, round(w * ah / aw))
        top = (h - ch) // 2
        return 0, top, w, top + ch
    if p.mode == "margin":
        dx, dy = int(w * p.margin), int(h * p.margin)
        return dx, dy, max(dx + 1, w - dx), max(dy + 1, h - dy)
    if mask is None:
        raise ValueError("crop to the subject needs the subject mask")
    ys, xs = np.nonzero(np.asarray(mask) > 127)
    if xs.size == 0:
        return 0, 0, w, h  # no subject found: keep the whole picture
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    px, py = int((x1 - x0) * p.padding), int((y1 - y0) * p.padding)
    return max(0, x0 - px), max(0, y0 - py), min(w, x1 + px), min(h, y1 + py)


def crop(img: Image.Image, p: CropParams, mask: Image.Image | None = None) -> Image.Image:
    return img.crop(crop_box(img.width, img.height, p, mask))
