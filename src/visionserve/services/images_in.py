"""Reading a request's image: base64 or URL (egress policy), size and format checks."""

from __future__ import annotations

import asyncio

import numpy as np
from PIL import Image

from visionserve.egress import EgressPolicy
from visionserve.errors import MissingInput, PayloadTooLarge
from visionserve.images import decode_base64, open_image
from visionserve.settings import Settings


async def read_image_bytes(
    image_b64: str | None, image_url: str | None, *, egress: EgressPolicy, settings: Settings
) -> bytes:
    """The raw bytes of the image a request names, or a 4xx error."""
    limit = settings.limits.max_download_bytes
    if image_b64:
        if len(image_b64) * 3 // 4 > limit:
            raise PayloadTooLarge(
                f"Image exceeds the {limit // (1024 * 1024)}MB limit", code="image_too_large"
            )
        return decode_base64(image_b64, field="image")
    if image_url:
        try:
            fetched = await egress.fetch(image_url, max_bytes=limit)
        except PayloadTooLarge as exc:
            raise PayloadTooLarge(
                f"Image at image_url exceeds the {limit // (1024 * 1024)}MB limit",
                code="image_too_large",
            ) from exc
        return fetched.content
    raise MissingInput("Provide either 'image' (base64) or 'image_url'", details={"field": "image"})


async def read_image(
    image_b64: str | None, image_url: str | None, *, egress: EgressPolicy, settings: Settings
) -> Image.Image:
    """The decoded, validated image (PNG, JPEG or WEBP) of a request."""
    data = await read_image_bytes(image_b64, image_url, egress=egress, settings=settings)
    return await asyncio.to_thread(open_image, data, max_pixels=settings.limits.max_image_pixels)


def to_pixels(img: Image.Image) -> np.ndarray:
    """RGB or RGBA uint8 pixels (what the model deployments take)."""
    has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    return np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
