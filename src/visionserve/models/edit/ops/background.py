"""Background operations on a subject mask (L, 255 = subject) from a bg-removal model."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageColor, ImageFilter

from visionserve.models.edit.catalogue import BlurBackgroundParams, ReplaceBackgroundParams


def _alpha(img: Image.Image, mask: Image.Image) -> Image.Image:
    """The mask, limited by any transparency the image already had."""
    mask = mask.convert("L").resize(img.size) if mask.size != img.size else mask.convert("L")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        own = img.convert("RGBA").getchannel("A")
        return Image.fromarray(np.minimum(np.asarray(own), np.asarray(mask)), "L")
    return mask


def remove_background(img: Image.Image, mask: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    rgba.putalpha(_alpha(img, mask))
    return rgba


def replace_background(
    img: Image.Image, mask: Image.Image, p: ReplaceBackgroundParams
) -> Image.Image:
    backdrop = Image.new("RGB", img.size, ImageColor.getrgb(p.color)[:3])
    backdrop.paste(img.convert("RGB"), mask=_alpha(img, mask))
    return backdrop


def blur_background(img: Image.Image, mask: Image.Image, p: BlurBackgroundParams) -> Image.Image:
    rgb = img.convert("RGB")
    # A soft mask edge, so the sharp subject fades into the blurred backdrop.
    soft = _alpha(img, mask).filter(ImageFilter.GaussianBlur(2))
    blurred = rgb.filter(ImageFilter.GaussianBlur(p.radius))
    blurred.paste(rgb, mask=soft)
    return blurred
