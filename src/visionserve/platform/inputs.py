"""Reading a request's input: base64 or URL (egress policy), with the size limit."""

from __future__ import annotations

import numpy as np
from PIL import Image

from visionserve.errors import MissingInput, PayloadTooLarge
from visionserve.platform.egress import EgressPolicy
from visionserve.platform.images import decode_base64
from visionserve.settings import Settings


async def read_input_bytes(
    b64: str | None,
    url: str | None,
    *,
    egress: EgressPolicy,
    settings: Settings,
    field: str = "image",
) -> bytes:
    """The raw bytes a request names (base64 or a URL), or a 4xx error."""
    limit = settings.limits.max_download_bytes
    too_large = f"{field.capitalize()} exceeds the {limit // (1024 * 1024)}MB limit"
    if b64:
        if len(b64) * 3 // 4 > limit:
            raise PayloadTooLarge(too_large, code="image_too_large")
        return decode_base64(b64, field=field)
    if url:
        try:
            fetched = await egress.fetch(url, max_bytes=limit)
        except PayloadTooLarge as exc:
            raise PayloadTooLarge(too_large, code="image_too_large") from exc
        return fetched.content
    raise MissingInput(
        f"Provide either '{field}' (base64) or '{field}_url'", details={"field": field}
    )


def to_pixels(img: Image.Image) -> np.ndarray:
    """RGB or RGBA uint8 pixels (what the model deployments take)."""
    has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    return np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
