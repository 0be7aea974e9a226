"""What every remote background-removal provider shares: result, protocol, errors, transport.

Provider failures are mapped onto :mod:`visionserve.errors` so that a shotgun run can
report each model's ``status: error`` on its own:

* unreachable, 5xx, rate limits, timeouts, our own credentials or balance:
  :class:`~visionserve.errors.ServiceUnavailable` (a problem of ours or the
  provider's, never a 401 to our client: auth failures carry the code
  ``provider_auth_failed``);
* the provider refusing the image itself (other 4xx, a failed task):
  :class:`~visionserve.errors.Unprocessable` with the provider's message.

No message ever contains the API key, even where a provider echoes it back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx

from visionserve.errors import (
    EgressRefused,
    ServiceUnavailable,
    Unprocessable,
    VisionServeError,
)
from visionserve.platform.egress import EgressPolicy
from visionserve.settings import MB, EgressSettings

#: Turns a PNG into a URL a provider can fetch (a signed blob URL in production).
Publisher = Callable[[bytes], Awaitable[str]]


@dataclass(frozen=True)
class RemoteResult:
    """One cut-out from a remote provider.

    Attributes:
        image: The result image as the provider encoded it (PNG with alpha).
        cost_usd: What the call cost, in US dollars.
        elapsed_ms: Wall time of the whole call, uploads and downloads included.
    """

    image: bytes
    cost_usd: float
    elapsed_ms: float


@runtime_checkable
class RemoteBackgroundRemover(Protocol):
    """A background-removal model served by a remote API."""

    model_id: str
    model_name: str

    async def remove(self, image_png: bytes, *, timeout_s: float) -> RemoteResult:
        """Remove the background of one PNG image.

        Args:
            image_png: The input image, PNG-encoded.
            timeout_s: Budget for the whole call, polling and downloads included.

        Returns:
            The cut-out, its cost and the time it took.

        Raises:
            ServiceUnavailable: Unreachable, 5xx, timed out, or our credentials
                or balance were refused (code ``provider_auth_failed``, ...).
            Unprocessable: The provider refused this image.
        """
        ...


def data_uri(image_png: bytes) -> str:
    """The PNG as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(image_png).decode("ascii")


def provider_error(
    provider: str, status: int, message: str, *, unavailable: Collection[int] = ()
) -> VisionServeError:
    """Map a provider's HTTP (or envelope) status onto the error hierarchy.

    Args:
        provider: The provider's display name, for the message.
        status: The HTTP status, or the status code inside the provider's JSON envelope.
        message: The provider's own explanation, already scrubbed of secrets.
        unavailable: Provider-specific 4xx codes that mean "try again later".

    Returns:
        The error to raise.
    """
    detail = f": {message}" if message else ""
    error: VisionServeError
    if status in (401, 403):
        error = ServiceUnavailable(
            f"{provider} refused our API key ({status}){detail}", code="provider_auth_failed"
        )
        error.retryable = False  # a bad key stays bad until an operator fixes it
    elif status == 402:
        error = ServiceUnavailable(
            f"{provider} account has insufficient credit{detail}", code="provider_payment_required"
        )
        error.retryable = False
    elif status == 429:
        error = ServiceUnavailable(f"{provider} rate limit reached{detail}", code="provider_busy")
    elif 400 <= status < 500 and status not in unavailable:
        error = Unprocessable(f"{provider} rejected the image{detail}", code="provider_rejected")
    else:
        error = ServiceUnavailable(
            f"{provider} is unavailable ({status}){detail}", code="provider_unavailable"
        )
    error.details = {"provider": provider, "status": status}
    return error


class HttpRemover:
    """Transport shared by the HTTP providers: auth, timeouts, error mapping, downloads.

    Subclasses set ``provider`` and implement :meth:`_run`.

    Args:
        api_key: The provider's API key, sent as a Bearer token.
        http: A client to share (connection reuse); by default one client per call.
        egress: The policy that result URLs in provider responses must pass; by
            default the strict one (public addresses only).
        max_result_bytes: The largest result image accepted.
    """

    provider: ClassVar[str]
    #: 4xx codes this provider uses for "down for maintenance" and the like.
    unavailable_codes: ClassVar[frozenset[int]] = frozenset()
    model_id: str
    model_name: str

    def __init__(
        self,
        api_key: str,
        *,
        http: httpx.AsyncClient | None = None,
        egress: EgressPolicy | None = None,
        max_result_bytes: int = 50 * MB,
    ) -> None:
        self._api_key = api_key
        self._http = http
        self._egress = egress or EgressPolicy(EgressSettings())
        self._max_result_bytes = max_result_bytes

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r})"

    async def remove(self, image_png: bytes, *, timeout_s: float) -> RemoteResult:
        """See :meth:`RemoteBackgroundRemover.remove`."""
        start = time.perf_counter()
        timeout = ServiceUnavailable(f"API timeout after {timeout_s:g}s", code="provider_timeout")
        try:
            async with asyncio.timeout(timeout_s), self._client(timeout_s) as client:
                image, cost_usd = await self._run(client, image_png)
        except (TimeoutError, httpx.TimeoutException):
            raise timeout from None
        except httpx.HTTPError as exc:
            why = self._scrub(str(exc) or type(exc).__name__)
            raise ServiceUnavailable(
                f"{self.provider} is unreachable: {why}", code="provider_unavailable"
            ) from None
        return RemoteResult(image, cost_usd, (time.perf_counter() - start) * 1000)

    async def _run(self, client: httpx.AsyncClient, image_png: bytes) -> tuple[bytes, float]:
        """The provider's protocol: the result image and its cost in USD."""
        raise NotImplementedError

    @asynccontextmanager
    async def _client(self, timeout_s: float) -> AsyncIterator[httpx.AsyncClient]:
        if self._http is not None:
            yield self._http
            return
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            yield client

    async def _call(
        self, client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
    ) -> tuple[int, Any]:
        """Send one authenticated request; the status and the decoded JSON body.

        A body that is not JSON comes back as its (short, scrubbed) text, so that a
        proxy's HTML error page still yields a readable message.
        """
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        response = await client.request(method, url, headers=headers, **kwargs)
        try:
            return response.status_code, response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return response.status_code, self._scrub(response.text[:200].strip())

    async def _download(self, url: str) -> bytes:
        """Fetch a result URL from a provider response under the egress policy.

        A provider's answer is not trusted to point at a public address: a URL into
        our own network is refused before any connection is made.
        """
        try:
            fetched = await self._egress.fetch(
                url, max_bytes=self._max_result_bytes, accept="image/*"
            )
        except EgressRefused as exc:
            raise ServiceUnavailable(
                f"{self.provider} returned a result URL we refuse to fetch: {exc.message}",
                code="provider_result_refused",
                details=exc.details,
            ) from exc
        except VisionServeError as exc:
            raise ServiceUnavailable(
                f"could not download the {self.provider} result: {exc.message}",
                code="provider_unavailable",
            ) from exc
        return fetched.content

    def _error(self, status: int, message: str) -> VisionServeError:
        return provider_error(
            self.provider, status, self._scrub(message), unavailable=self.unavailable_codes
        )

    def _bad_response(self, what: str) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"{self.provider} sent an unexpected response: {what}", code="provider_bad_response"
        )

    def _scrub(self, text: str) -> str:
        # Providers sometimes echo the credentials they were sent.
        return text.replace(self._api_key, "[redacted]") if self._api_key else text
