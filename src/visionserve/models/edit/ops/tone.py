"""Tone and colour: brightness, contrast, saturation, sharpen, blur, denoise, auto-enhance,
grayscale, sepia, invert. Alpha is kept as it was; only the colour channels change."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from visionserve.models.edit.catalogue import (
    AmountParams,
    BlurParams,
    DenoiseParams,
    SharpenParams,
)

#: Rows per strip for the OpenCV filters, so their buffers stay bounded on big images.
STRIP_ROWS = 512


def keep_alpha(fn: Callable[[Image.Image], Image.Image], img: Image.Image) -> Image.Image:
    """Apply ``fn`` to the RGB channels and put the original alpha back."""
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        out = fn(rgba.convert("RGB")).convert("RGB")
        out.putalpha(rgba.getchannel("A"))
        return out
    # Every filter here returns a new image, so an RGB input needs no defensive copy.
    return fn(img if img.mode == "RGB" else img.convert("RGB"))


def brightness(img: Image.Image, p: AmountParams) -> Image.Image:
    return keep_alpha(lambda rgb: ImageEnhance.Brightness(rgb).enhance(1 + p.amount), img)


def contrast(img: Image.Image, p: AmountParams) -> Image.Image:
    return keep_alpha(lambda rgb: ImageEnhance.Contrast(rgb).enhance(1 + p.amount), img)


def saturation(img: Image.Image, p: AmountParams) -> Image.Image:
    return keep_alpha(lambda rgb: ImageEnhance.Color(rgb).enhance(1 + p.amount), img)


def temperature(img: Image.Image, p: AmountParams) -> Image.Image:
    """Warmer (amount > 0: more red, less blue) or cooler, by lookup tables (no copies)."""
    gain = max(-0.9, min(0.9, 0.3 * p.amount))  # 20% warmer: red x1.06, blue x0.94
    red = [min(255, round(v * (1 + gain))) for v in range(256)]
    blue = [min(255, round(v * (1 - gain))) for v in range(256)]
    return keep_alpha(lambda rgb: rgb.point(red + list(range(256)) + blue), img)


def sharpen(img: Image.Image, p: SharpenParams) -> Image.Image:
    percent = round(100 * p.amount)
    return keep_alpha(lambda rgb: rgb.filter(ImageFilter.UnsharpMask(2, percent, 2)), img)


def blur(img: Image.Image, p: BlurParams) -> Image.Image:
    return keep_alpha(lambda rgb: rgb.filter(ImageFilter.GaussianBlur(p.radius)), img)


def _strips(rgb: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], overlap: int) -> np.ndarray:
    """Run ``fn`` over horizontal strips with ``overlap`` rows of context each side."""
    h = rgb.shape[0]
    out = np.empty_like(rgb)
    for top in range(0, h, STRIP_ROWS):
        bottom = min(h, top + STRIP_ROWS)
        a, b = max(0, top - overlap), min(h, bottom + overlap)
        done = fn(np.ascontiguousarray(rgb[a:b]))
        out[top:bottom] = done[top - a : top - a + (bottom - top)]
    return out


def denoise(img: Image.Image, p: DenoiseParams) -> Image.Image:
    def run(rgb: Image.Image) -> Image.Image:
        arr = np.asarray(rgb)
        # Non-local means looks 10 px around each pixel (search window 21): 16 rows of context.
        done = _strips(
            arr,
            lambda a: cv2.fastNlMeansDenoisingColored(a, None, p.strength, p.strength, 7, 21),
            16,
        )
        return Image.fromarray(done, "RGB")

    return keep_alpha(run, img)


def _white_balance(arr: np.ndarray) -> np.ndarray:
    """Grey-world white balance: scale each channel so their means agree."""
    means = arr.reshape(-1, 3).mean(axis=0) + 1e-6
    gains = np.clip(means.mean() / means, 0.6, 1.6)
    return np.clip(arr.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def auto_enhance(img: Image.Image, _p: object = None) -> Image.Image:
    """White balance, then CLAHE on lightness, then a gentle autocontrast."""

    def run(rgb: Image.Image) -> Image.Image:
        arr = _white_balance(np.asarray(rgb))
        lab = cv2.cvtColor(arr, cv2.COLOR_RGB2LAB)
        clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
        lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
        out = Image.fromarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), "RGB")
        return ImageOps.autocontrast(out, cutoff=0.5, preserve_tone=True)

    return keep_alpha(run, img)


def grayscale(img: Image.Image, _p: object = None) -> Image.Image:
    return keep_alpha(lambda rgb: rgb.convert("L").convert("RGB"), img)


_SEPIA = np.array(
    [[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], dtype=np.float32
)


def sepia(img: Image.Image, _p: object = None) -> Image.Image:
    def run(rgb: Image.Image) -> Image.Image:
        # Pillow's matrix convert: one pass in C, no float copy of the image.
        matrix = tuple(float(v) for row in _SEPIA for v in (*row, 0.0))
        return rgb.convert("RGB", matrix)

    return keep_alpha(run, img)


def invert(img: Image.Image, _p: object = None) -> Image.Image:
    return keep_alpha(ImageOps.invert, img)
