"""Remove small text and marks (OCR boxes + inpainting), and add a text watermark."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from visionserve.models.documents.ocr import OcrEngine
from visionserve.models.edit.catalogue import WatermarkParams

#: Text boxes taller than this share of the image are not "small text" and stay.
MAX_TEXT_HEIGHT = 0.2
#: Longest side the OCR pass sees (a bound on its memory); boxes are scaled back.
OCR_SIDE = 2048
#: Images thinner than this hold no legible text.
MIN_TEXT_SIDE = 8


def text_mask(img: Image.Image, ocr: OcrEngine, *, min_confidence: float = 0.3) -> Image.Image:
    """A mask (L, 255 = text) over the small words the OCR engine reads, grown a little."""
    rgb = img.convert("RGB")
    if min(rgb.size) < MIN_TEXT_SIDE:
        # No legible text fits; RapidOCR would blow such an image up to its own minimum.
        return Image.new("L", rgb.size, 0)
    scale = min(1.0, OCR_SIDE / max(rgb.size))
    seen = (
        rgb
        if scale == 1
        else rgb.resize(
            (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
            Image.Resampling.LANCZOS,
        )
    )
    mask = np.zeros((rgb.height, rgb.width), np.uint8)
    for word in ocr.recognize(np.asarray(seen)):
        if word.confidence < min_confidence or not word.text.strip():
            continue
        b = word.bbox
        x0, y0, x1, y1 = (v / scale for v in (b.left, b.top, b.right, b.bottom))
        if (y1 - y0) > MAX_TEXT_HEIGHT * rgb.height:
            continue
        grow = max(2, int((y1 - y0) * 0.15))
        mask[
            max(0, int(y0) - grow) : min(rgb.height, int(y1) + grow + 1),
            max(0, int(x0) - grow) : min(rgb.width, int(x1) + grow + 1),
        ] = 255
    return Image.fromarray(mask, "L")


def inpaint(img: Image.Image, mask: Image.Image, *, radius: int = 5) -> Image.Image:
    """Fill the masked pixels from their surroundings (Telea), alpha kept."""
    m = np.asarray(mask.convert("L"))
    if not m.any():
        return img.copy()
    rgb = np.ascontiguousarray(np.asarray(img.convert("RGB")))
    # Only the rows and columns the mask touches (plus the radius) go through OpenCV.
    ys, xs = np.nonzero(m)
    pad = radius * 3
    y0, y1 = max(0, ys.min() - pad), min(m.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(m.shape[1], xs.max() + pad + 1)
    out = rgb.copy()
    out[y0:y1, x0:x1] = cv2.inpaint(
        np.ascontiguousarray(rgb[y0:y1, x0:x1]),
        np.ascontiguousarray(m[y0:y1, x0:x1]),
        radius,
        cv2.INPAINT_TELEA,
    )
    result = Image.fromarray(out, "RGB")
    if img.mode == "RGBA":
        result.putalpha(img.getchannel("A"))
    return result


def watermark(img: Image.Image, p: WatermarkParams) -> Image.Image:
    """``p.text`` in white with a dark outline, about 4% of the image's height."""
    text = p.text or "©"
    base = img.convert("RGBA")
    size = max(12, int(min(base.size) * 0.045))
    font = ImageFont.load_default(size=size)
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    stroke = max(1, size // 12)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
    tw, th = right - left, bottom - top
    margin = max(4, size // 2)
    x = {"left": margin, "right": base.width - tw - margin}.get(
        p.position.split("-")[-1], (base.width - tw) // 2
    )
    y = {"top": margin, "bottom": base.height - th - margin}.get(
        p.position.split("-")[0], (base.height - th) // 2
    )
    alpha = int(255 * p.opacity)
    draw.text(
        (x - left, y - top),
        text,
        font=font,
        fill=(255, 255, 255, alpha),
        stroke_width=stroke,
        stroke_fill=(0, 0, 0, alpha),
    )
    out = Image.alpha_composite(base, layer)
    return out if img.mode == "RGBA" else out.convert("RGB")
