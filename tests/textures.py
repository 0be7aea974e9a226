"""Generated "fabric" textures with drawn defects and their masks (no files shipped).

Deterministic for a given seed. Normal images vary in weave phase, noise and tint
within a narrow band; defects are a dark scratch, a coloured stain or a black square,
each with an exact 0/255 mask.

    from tests.textures import make_dataset
    samples = make_dataset(tmp_path, normal=20, anomalous=6)
    # [TextureSample(path, "normal", None), ..., TextureSample(path, "anomalous", mask_path)]

``TextureSample`` is a plain named tuple, so ``Sample(*t)`` or ``Sample(**t._asdict())``
converts it to :class:`visionserve.models.anomaly.training.Sample`.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

DEFECTS = ("scratch", "stain", "square")


class TextureSample(NamedTuple):
    path: Path
    label: str  # "normal" | "anomalous"
    mask: Path | None


def fabric(size: int = 128, seed: int = 0) -> np.ndarray:
    """A normal woven-fabric texture, RGB uint8 ``size``×``size``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    px, py = rng.uniform(0, 2 * np.pi, 2)
    period = 6.0 * size / 128
    weave = (
        0.5
        + 0.25 * np.sin(2 * np.pi * x / period + px)
        + 0.25 * np.sin(2 * np.pi * y / period + py)
    )
    noise = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 1.5)
    noise = (noise - noise.mean()) / (noise.std() + 1e-6)
    base = np.clip(0.75 * weave + 0.08 * noise, 0, 1)
    tint = np.array([170, 150, 120], np.float32) + rng.uniform(-6, 6, 3)
    rgb = base[..., None] * 0.45 * tint + 0.55 * tint
    return np.clip(rgb, 0, 255).astype(np.uint8)


def defect(rgb: np.ndarray, kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draw a defect on a copy of ``rgb``.

    Args:
        rgb: The texture (RGB uint8).
        kind: ``scratch``, ``stain`` or ``square``.
        seed: Position and shape.

    Returns:
        ``(image, mask)``: the damaged image and a uint8 0/255 mask of the defect.
    """
    rng = np.random.default_rng(10_000 + seed)
    h, w = rgb.shape[:2]
    s = min(h, w)
    out = rgb.copy()
    mask = np.zeros((h, w), np.uint8)
    cx, cy = (int(v) for v in rng.integers(int(0.3 * s), int(0.7 * s), 2))
    if kind == "scratch":
        angle = rng.uniform(0, np.pi)
        half = 0.22 * s
        p0 = (int(cx - half * np.cos(angle)), int(cy - half * np.sin(angle)))
        p1 = (int(cx + half * np.cos(angle)), int(cy + half * np.sin(angle)))
        thickness = max(2, s // 40)
        cv2.line(mask, p0, p1, 255, thickness)
        out[mask > 0] = (out[mask > 0] * 0.35).astype(np.uint8)
    elif kind == "stain":
        radius = int(rng.uniform(0.08, 0.12) * s)
        cv2.circle(mask, (cx, cy), radius, 255, -1)
        colour = np.array([90, 60, 150], np.float32)
        alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), radius / 4)[..., None]
        out = (out * (1 - 0.8 * alpha) + colour * 0.8 * alpha).astype(np.uint8)
        mask = np.where(alpha[..., 0] > 0.25, 255, 0).astype(np.uint8)
    elif kind == "square":
        half = int(rng.uniform(0.06, 0.09) * s)
        cv2.rectangle(mask, (cx - half, cy - half), (cx + half, cy + half), 255, -1)
        out[mask > 0] = 15
    else:
        raise ValueError(f"unknown defect {kind!r}; valid: {', '.join(DEFECTS)}")
    return out, mask


def _write(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def make_dataset(
    root: Path, normal: int, anomalous: int, size: int = 128, seed: int = 0
) -> list[TextureSample]:
    """Write ``normal`` good and ``anomalous`` defective textures as PNGs under ``root``.

    Layout: ``root/good/NNN.png``, ``root/defect/NNN.png``, ``root/mask/NNN.png`` (0/255).
    Defect kinds cycle scratch, stain, square.

    Args:
        root: Output directory (created).
        normal: Number of normal images.
        anomalous: Number of images with a defect.
        size: Image side in pixels.
        seed: Base seed; the same arguments always give the same files.

    Returns:
        Normal samples first, then anomalous ones with their mask paths.
    """
    root = Path(root)
    for sub in ("good", "defect", "mask"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(normal):
        path = _write(root / "good" / f"{i:03d}.png", fabric(size, seed * 1000 + i))
        out.append(TextureSample(path, "normal", None))
    for i in range(anomalous):
        base = fabric(size, seed * 1000 + 500 + i)
        img, mask = defect(base, DEFECTS[i % len(DEFECTS)], seed * 1000 + i)
        path = _write(root / "defect" / f"{i:03d}.png", img)
        mask_path = root / "mask" / f"{i:03d}.png"
        cv2.imwrite(str(mask_path), mask)
        out.append(TextureSample(path, "anomalous", mask_path))
    return out
