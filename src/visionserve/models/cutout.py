"""What flows between the cutout deployments: pixels or encoded bytes, plus their cost."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Cutout:
    """An image result: ``pixels`` (HxWx4 uint8) or ``encoded`` bytes, and what it cost."""

    pixels: np.ndarray | None = None
    encoded: bytes | None = None
    cost_usd: float = 0.0
    width: int = 0
    height: int = 0

    @classmethod
    def of(cls, pixels: np.ndarray, cost_usd: float = 0.0) -> Cutout:
        h, w = pixels.shape[:2]
        return cls(pixels=pixels, cost_usd=cost_usd, width=w, height=h)
