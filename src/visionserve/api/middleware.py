"""Pure ASGI middleware of the root app: request ids, extra headers, body size limit.

Pure ASGI (not BaseHTTPMiddleware) so bodies are never buffered here: an oversized
request is refused from its Content-Length before a byte is read, and a chunked one
is cut off as soon as it passes the limit.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visionserve.errors import PayloadTooLarge, VisionServeError
from visionserve.platform.logging import request_id_var

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

ErrorRenderer = Callable[[VisionServeError, str], Response]


def state(scope: Scope) -> dict[str, Any]:
    return scope.setdefault("state", {})


def add_response_headers(scope: Scope, headers: dict[str, str]) -> None:
    """Headers that every response to this request carries (rate limits, ...)."""
    state(scope).setdefault("extra_headers", {}).update(headers)


class RequestContextMiddleware:
    """Request id in and out, extra headers on every response, and the body size cap.

    ``render_error(path)`` gives the error renderer of the surface that owns ``path``,
    so a 413 is written in that surface's own error format.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        renderer_for: Callable[[str], ErrorRenderer],
        emit_request_id: bool = True,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.renderer_for = renderer_for
        # Serve's proxy already echoes X-Request-ID (and forwards the client's own).
        self.emit_request_id = emit_request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
        state(scope)["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = dict(state(scope).get("extra_headers", {}))
                if self.emit_request_id:
                    extra[REQUEST_ID_HEADER] = request_id
                raw = list(message.get("headers", []))
                present = {k.lower() for k, _ in raw}
                for name, value in extra.items():
                    if name.lower().encode("latin-1") not in present:
                        raw.append((name.encode("latin-1"), value.encode("latin-1")))
                message = {**message, "headers": raw}
            await send(message)

        try:
            too_large = self._too_large(headers.get("content-length"))
            if too_large:
                await self._refuse(scope, receive, send_with_headers)
                return
            exceeded = False
            seen = 0

            async def capped_receive() -> Message:
                nonlocal exceeded, seen
                if exceeded:
                    return {"type": "http.disconnect"}
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > self.max_body_bytes:
                        exceeded = True
                        return {"type": "http.disconnect"}
                return message

            async def guarded_send(message: Message) -> None:
                if not exceeded:
                    await send_with_headers(message)

            try:
                await self.app(scope, capped_receive, guarded_send)
            except Exception:
                if not exceeded:
                    raise
            if exceeded and not started:
                await self._refuse(scope, None, send_with_headers)
        finally:
            request_id_var.reset(token)

    def _too_large(self, content_length: str | None) -> bool:
        if content_length is None:
            return False
        try:
            return int(content_length) > self.max_body_bytes
        except ValueError:
            return False

    async def _refuse(self, scope: Scope, receive: Receive | None, send: Send) -> None:
        limit_mb = self.max_body_bytes / (1024 * 1024)
        error = PayloadTooLarge(
            f"Request body exceeds the {limit_mb:g} MB limit",
            code="payload_too_large",
            details={"limit_bytes": self.max_body_bytes},
        )
        response = self.renderer_for(scope.get("path", "/"))(error, state(scope)["request_id"])
        response.headers["Connection"] = "close"
        await response(scope, receive or _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}
