"""Generated test scenes with a known foreground shape (no image files shipped)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def textured_background(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A muted wood/fabric-like texture: stripes plus blurred noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    stripes = 0.5 + 0.5 * np.sin(x / 7.0 + 3 * np.sin(y / 31.0))
    noise = (
        np.asarray(
            Image.fromarray((rng.random((h, w)) * 255).astype(np.uint8)).filter(
                ImageFilter.GaussianBlur(2)
            ),
            dtype=np.float32,
        )
        / 255.0
    )
    base = 0.55 * stripes + 0.45 * noise
    rgb = np.stack([150 + 50 * base, 140 + 45 * base, 120 + 40 * base], axis=-1)
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")


def object_scene(
    size: tuple[int, int] = (512, 384),
    colour: tuple[int, int, int] = (200, 30, 40),
    shape: str = "ellipse",
    seed: int = 0,
) -> tuple[Image.Image, np.ndarray]:
    """A shaded coloured object on a textured background, and its true mask (bool HxW)."""
    w, h = size
    img = textured_background(size, seed)
    mask_img = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask_img)
    box = (int(w * 0.28), int(h * 0.2), int(w * 0.72), int(h * 0.82))
    if shape == "ellipse":
        draw.ellipse(box, fill=255)
    elif shape == "rounded":
        draw.rounded_rectangle(box, radius=int(min(w, h) * 0.08), fill=255)
    else:  # a bottle-like silhouette: body and neck
        bx0, by0, bx1, by1 = box
        neck_w = (bx1 - bx0) // 4
        cx = (bx0 + bx1) // 2
        draw.rounded_rectangle((bx0, by0 + (by1 - by0) // 3, bx1, by1), radius=20, fill=255)
        draw.rectangle((cx - neck_w // 2, by0, cx + neck_w // 2, by0 + (by1 - by0) // 3), fill=255)
    mask = np.asarray(mask_img) > 127
    # Shading: lighter top-left, darker bottom-right, so it looks like a solid object.
    yy, xx = np.mgrid[0:h, 0:w]
    shade = (
        1.15 - 0.35 * ((xx - box[0]) / (box[2] - box[0]) + (yy - box[1]) / (box[3] - box[1])) / 2
    )
    obj = np.clip(np.asarray(colour, np.float32)[None, None, :] * shade[..., None], 0, 255)
    arr = np.asarray(img, np.float32).copy()
    arr[mask] = obj[mask]
    return Image.fromarray(arr.astype(np.uint8), "RGB"), mask


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else 1.0
