"""The ASGI middleware that honours ``Idempotency-Key`` (its store: ``store.idempotency``).

A retry with the same key and request gets the stored response back; a different
request under the same key is refused, and so is a retry while the first still runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from visionserve.store.idempotency import (
    DEFAULT_TTL_S,
    MAX_CACHED_BODY,
    MAX_KEY_LENGTH,
    Begin,
    IdempotencyStore,
    idempotency_scope,
    request_fingerprint,
)

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ErrorRenderer = Callable[[Scope, int, str, str], ASGIApp]
"""``on_error(scope, status, code, message)`` -> an ASGI response (e.g. a Starlette one)."""

# Not replayed: recomputed, per-response, or describing the original request's moment.
_VOLATILE_HEADERS = frozenset(
    {
        "content-length",
        "date",
        "server",
        "x-request-id",
        "retry-after",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    }
)
# Answers that say "try again later": storing them would make the retry fail too.
_RETRYABLE_STATUSES = frozenset({408, 425, 429})


class IdempotencyMiddleware:
    """Pure ASGI middleware that honours ``Idempotency-Key`` on POST and PATCH.

    The principal a key belongs to is, in order: ``scope["state"]["principal"]``
    (set by an outer auth middleware; a string or an object with ``id``), else a
    sha256 of the ``Authorization`` header (so two clients never share keys even
    when auth runs later, inside the app), else ``"anonymous"``.

    Responses with status >= 500, 408, 425 or 429, responses that raised, and bodies
    over ``max_body_bytes`` are passed through but not stored: the reservation is
    dropped so the client can retry. Replays carry ``Idempotent-Replayed: true``.

    Args:
        app: The wrapped ASGI app.
        store: Where reservations and responses live.
        on_error: Renders this surface's error body for 400/409/422 answers.
        ttl_s: How long a stored response is replayed.
        max_body_bytes: Larger responses are not stored.
        methods: Methods the key applies to.
    """

    def __init__(
        self,
        app: ASGIApp,
        store: IdempotencyStore,
        on_error: ErrorRenderer,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_body_bytes: int = MAX_CACHED_BODY,
        methods: frozenset[str] = frozenset({"POST", "PATCH"}),
    ) -> None:
        self.app = app
        self.store = store
        self.on_error = on_error
        self.ttl_s = ttl_s
        self.max_body_bytes = max_body_bytes
        self.methods = methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in self.methods:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        key = headers.get("idempotency-key")
        if key is None:
            await self.app(scope, receive, send)
            return
        if not key or len(key) > MAX_KEY_LENGTH:
            message = f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters"
            await self.on_error(scope, 400, "validation_error", message)(scope, receive, send)
            return

        body = await _read_body(receive)
        if body is None:
            return  # the client went away before sending its body
        method, path = scope["method"], scope["path"]
        ident = idempotency_scope(_principal(scope, headers), method, path, key)
        fingerprint = request_fingerprint(method, path, body, scope.get("query_string", b""))

        found = await self.store.begin(ident, fingerprint, self.ttl_s)
        if found.state == "replay":
            await _send_stored(send, found)
        elif found.state == "mismatch":
            message = "Idempotency-Key reused with a different request"
            await self.on_error(scope, 422, "idempotency_key_reused", message)(scope, receive, send)
        elif found.state == "in_progress":
            message = "A request with this Idempotency-Key is still in progress"
            await self.on_error(scope, 409, "idempotency_key_in_progress", message)(
                scope, receive, send
            )
        else:
            await self._run(scope, _replay_body(body, receive), send, ident)

    async def _run(self, scope: Scope, receive: Receive, send: Send, ident: str) -> None:
        captured = _Capture(send, self.max_body_bytes)
        stored = False
        try:
            await self.app(scope, receive, captured)
            if captured.cacheable:
                assert captured.status is not None
                await self.store.complete(ident, captured.status, captured.headers, captured.body)
                stored = True
        finally:
            if not stored:
                # Shielded so that a cancelled request (client gone) still frees its key.
                await asyncio.shield(self.store.abandon(ident))


class _Capture:
    """A ``send`` that forwards every message and keeps a copy of the response."""

    def __init__(self, send: Send, max_body_bytes: int) -> None:
        self._send = send
        self._max = max_body_bytes
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self._chunks: list[bytes] = []
        self._size = 0
        self._complete = False
        self._uncacheable = False

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
            for raw_name, raw_value in message.get("headers", []):
                name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
                if name in _VOLATILE_HEADERS:
                    continue
                # Repeated headers are folded, which HTTP allows for all but Set-Cookie
                # (an API response has none worth replaying).
                self.headers[name] = (
                    f"{self.headers[name]}, {value}" if name in self.headers else value
                )
        elif kind == "http.response.body":
            chunk = message.get("body", b"")
            self._size += len(chunk)
            if self._size > self._max:
                self._uncacheable = True
                self._chunks.clear()
            elif not self._uncacheable:
                self._chunks.append(chunk)
            if not message.get("more_body", False):
                self._complete = True
        else:
            self._uncacheable = True  # e.g. http.response.pathsend: nothing to keep
        await self._send(message)

    @property
    def body(self) -> bytes:
        return b"".join(self._chunks)

    @property
    def cacheable(self) -> bool:
        return (
            self._complete
            and not self._uncacheable
            and self.status is not None
            and self.status < 500
            and self.status not in _RETRYABLE_STATUSES
        )


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _principal(scope: Scope, headers: dict[str, str]) -> str:
    principal = (scope.get("state") or {}).get("principal")
    if principal is not None:
        return str(getattr(principal, "id", principal))
    authorization = headers.get("authorization")
    if authorization:
        return "auth-" + hashlib.sha256(authorization.encode("latin-1")).hexdigest()
    return "anonymous"


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the buffered body once, then the real channel."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for the disconnect, as usual

    return replay


async def _send_stored(send: Send, found: Begin) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in found.headers.items()]
    headers.append((b"content-length", str(len(found.body)).encode()))
    headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": found.status, "headers": headers})
    await send({"type": "http.response.body", "body": found.body, "more_body": False})
