"""An optional generative backend: an OpenAI-compatible image edit API.

``POST {base_url}/v1/images/edits`` (multipart: ``image``, ``prompt``, ``model``) for what
no local operation does ("add a dog"). gpt-image-1 answers ``data[0].b64_json``;
dall-e-2 answers ``data[0].url`` or ``b64_json`` (we ask it for base64). A billing or
quota error (HTTP 402/429 with ``insufficient_quota`` or ``billing_hard_limit_reached``)
raises :class:`QuotaExceeded`, so the caller can run the local plan instead; anything
else raises :class:`GenerativeFailed` with a public message (never the server's text).
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

import httpx
from PIL import Image

from visionserve.errors import ServiceUnavailable
from visionserve.platform.egress import EgressPolicy, pinned_request_args
from visionserve.platform.images import encode_image, open_image

log = logging.getLogger(__name__)

QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"})
#: Largest answer read (a result image, base64 or fetched from its URL).
MAX_RESULT_BYTES = 50 * 1024 * 1024
MAX_RESULT_PIXELS = 64_000_000


class GenerativeFailed(ServiceUnavailable):
    """The image edit API failed; the message is safe to show."""

    code = "generative_failed"


class QuotaExceeded(GenerativeFailed):
    """The image edit API refused for billing or quota: run the local plan instead."""

    code = "generative_quota_exceeded"
    retryable = False


class GenerativeBackend:
    """Client for ``POST /v1/images/edits``.

    Args:
        base_url: The API root (``https://api.openai.com`` or ``.../v1``).
        api_key: Sent as a Bearer token.
        model: ``gpt-image-1``, ``dall-e-2`` or what the server offers.
        timeout_s: For the whole call.
        egress: When given, the URLs are checked and pinned by this policy.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        timeout_s: float,
        *,
        egress: EgressPolicy | None = None,
    ) -> None:
        root = base_url.rstrip("/")
        self.url = f"{root}/images/edits" if root.endswith("/v1") else f"{root}/v1/images/edits"
        self.api_key = api_key
        self.model = model
        self.timeout_s = timeout_s
        self.egress = egress

    async def edit(self, image: Image.Image, prompt: str) -> Image.Image:
        """The edited image.

        Raises:
            QuotaExceeded: A billing or quota refusal.
            GenerativeFailed: Unreachable, timed out, an HTTP error or an unreadable answer.
            EgressRefused: The egress policy refuses the API's (or the result's) URL.
        """
        png = encode_image(image.convert("RGBA"), "png")
        data: dict[str, str] = {"model": self.model, "prompt": prompt[:4000], "n": "1"}
        if self.model.startswith("dall-e"):
            data["response_format"] = "b64_json"
        files = {"image": ("image.png", png, "image/png")}
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            r = await self._send("POST", self.url, headers, data=data, files=files)
        except httpx.TimeoutException:
            raise GenerativeFailed(
                f"The image edit service did not answer within {self.timeout_s:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise GenerativeFailed(
                f"The image edit service is unreachable ({type(exc).__name__})"
            ) from None
        if r.status_code >= 400:
            raise _error_for(r)
        try:
            item = r.json()["data"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise GenerativeFailed(
                "The image edit service gave an answer without an image"
            ) from None
        return await self._image_of(item)

    async def _send(
        self, method: str, url: str, headers: dict[str, str], **kwargs: Any
    ) -> httpx.Response:
        extensions: dict[str, Any] = {}
        client_kwargs: dict[str, Any] = {"timeout": self.timeout_s, "trust_env": False}
        if self.egress is not None:
            target = self.egress.check(url)
            url, host, extensions = pinned_request_args(target, url)
            headers = {**headers, **host}
            client_kwargs = {**self.egress.client_kwargs(), "timeout": self.timeout_s}
        async with httpx.AsyncClient(**client_kwargs) as client:
            return await client.request(
                method, url, headers=headers, extensions=extensions, **kwargs
            )

    async def _image_of(self, item: Any) -> Image.Image:
        if isinstance(item, dict) and isinstance(item.get("b64_json"), str):
            try:
                raw = base64.b64decode(item["b64_json"], validate=True)
            except (binascii.Error, ValueError):
                raise GenerativeFailed("The image edit service sent broken base64") from None
        elif isinstance(item, dict) and isinstance(item.get("url"), str):
            try:
                r = await self._send("GET", item["url"], {})
            except httpx.HTTPError as exc:
                raise GenerativeFailed(
                    f"The edited image could not be downloaded ({type(exc).__name__})"
                ) from None
            if r.status_code >= 400:
                raise GenerativeFailed(
                    f"The edited image could not be downloaded (HTTP {r.status_code})"
                )
            raw = r.content
        else:
            raise GenerativeFailed("The image edit service gave an answer without an image")
        if len(raw) > MAX_RESULT_BYTES:
            raise GenerativeFailed("The image edit service sent an image that is too large")
        try:
            img = open_image(raw, max_pixels=MAX_RESULT_PIXELS)
            img.load()
        except Exception:
            raise GenerativeFailed("The image edit service sent an unreadable image") from None
        return img


def _error_for(r: httpx.Response) -> GenerativeFailed:
    code = err_type = ""
    try:
        error = r.json().get("error") or {}
        code, err_type = str(error.get("code") or ""), str(error.get("type") or "")
    except (ValueError, AttributeError):
        pass
    log.warning("image edit API answered HTTP %s (%s %s)", r.status_code, code, err_type)
    if r.status_code in (402, 429) and (code in QUOTA_CODES or err_type in QUOTA_CODES):
        return QuotaExceeded(
            "The image edit service refused the request: its billing or quota limit is reached"
        )
    if r.status_code == 429:
        err = GenerativeFailed("The image edit service is rate limiting requests; retry later")
        err.retryable = True
        return err
    return GenerativeFailed(f"The image edit service answered HTTP {r.status_code}")
