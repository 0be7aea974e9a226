"""``Idempotency-Key`` support: a store of reserved/completed responses and an ASGI middleware.

A request with a key first *reserves* its scope (``begin``); the first one wins and
runs, and its response is stored (``complete``) unless it failed in a way worth
retrying, in which case the reservation is dropped (``abandon``). A retry with the
same key and request gets the stored response back; a different request under the
same key is refused, and so is a retry while the first is still running.

The SQL store (the default) keeps records in ``idempotency_keys``; the Redis store
is used when the cluster has Redis (see :func:`make_idempotency_store`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from visionserve.store.db import session_scope
from visionserve.store.records import IdempotencyRecord, utcnow

if TYPE_CHECKING:
    from visionserve.settings import Settings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_TTL_S = 24 * 3600
# A reservation older than this is presumed to belong to a replica that died mid-request,
# so the key does not stay locked for the whole TTL.
DEFAULT_LOCK_TIMEOUT_S = 600.0
MAX_KEY_LENGTH = 255
MAX_CACHED_BODY = 10 * 1024 * 1024
_SCOPE_COLUMN_LENGTH = 300  # IdempotencyRecord.scope


@dataclass(frozen=True)
class Begin:
    """What :meth:`IdempotencyStore.begin` found.

    Attributes:
        state: ``new`` (the caller owns the key and must process the request, then
            ``complete`` or ``abandon``), ``replay`` (return the stored response),
            ``mismatch`` (the key was used for a different request) or
            ``in_progress`` (another request with this key is still running).
        status: Stored response status (``replay`` only).
        headers: Stored response headers (``replay`` only).
        body: Stored response body (``replay`` only).
    """

    state: Literal["new", "replay", "mismatch", "in_progress"]
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class IdempotencyStore(Protocol):
    """Reservations and stored responses keyed by idempotency scope."""

    async def begin(self, scope: str, fingerprint: str, ttl_s: float = DEFAULT_TTL_S) -> Begin:
        """Reserve ``scope`` for a request, or report what already holds it.

        Args:
            scope: ``principal:method:path:key`` (see :func:`idempotency_scope`).
            fingerprint: Hash of the request (see :func:`request_fingerprint`).
            ttl_s: How long the record (and later the stored response) lives.
        """
        ...

    async def complete(self, scope: str, status: int, headers: dict[str, str], body: bytes) -> None:
        """Store the response of the request that owns ``scope``."""
        ...

    async def abandon(self, scope: str) -> None:
        """Drop the reservation of ``scope`` so the client may retry."""
        ...


def idempotency_scope(principal: str, method: str, path: str, key: str) -> str:
    """The scope a key is unique within: one principal, method and path."""
    return f"{principal}:{method}:{path}:{key}"


def request_fingerprint(method: str, path: str, body: bytes, query: bytes = b"") -> str:
    """sha256 of the method, path, query string and body."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query):
        digest.update(part)
        digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


def _stale_before(lock_timeout_s: float) -> float:
    return time.time() - lock_timeout_s


class SqlIdempotencyStore:
    """Records in the ``idempotency_keys`` table (SQLite or PostgreSQL).

    Insert-if-absent relies on the primary key: of two racing inserts one gets an
    ``IntegrityError`` and re-reads. Expired records and stale reservations count
    as absent and are replaced. Sessions are synchronous, so every call runs in a
    worker thread.

    Args:
        database_url: SQLAlchemy URL; the tables come from the migrations.
        lock_timeout_s: Age after which an unfinished reservation is taken over.
    """

    def __init__(
        self, database_url: str, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    ) -> None:
        self._url = database_url
        self._lock_timeout_s = lock_timeout_s

    @staticmethod
    def _key(scope: str) -> str:
        # Scopes carry a path and a 255-character key, which can outgrow the column.
        if len(scope) <= _SCOPE_COLUMN_LENGTH:
            return scope
        return "sha256:" + hashlib.sha256(scope.encode()).hexdigest()

    async def begin(self, scope: str, fingerprint: str, ttl_s: float = DEFAULT_TTL_S) -> Begin:
        """See :meth:`IdempotencyStore.begin`."""
        return await asyncio.to_thread(self._begin, self._key(scope), fingerprint, ttl_s)

    def _begin(self, key: str, fingerprint: str, ttl_s: float) -> Begin:
        for _ in range(5):
            now = utcnow()
            try:
                with session_scope(self._url) as session:
                    record = session.get(IdempotencyRecord, key)
                    if record is not None:
                        stale = record.status == "in_progress" and (
                            record.created_at < now - timedelta(seconds=self._lock_timeout_s)
                        )
                        if record.expires_at > now and not stale:
                            return _found(
                                record.request_hash,
                                record.status,
                                fingerprint,
                                record.response_status,
                                record.response_headers,
                                record.response_body,
                            )
                        # Conditional on what we read: a racing taker-over deletes nothing
                        # and then collides on the primary key below.
                        session.execute(
                            delete(IdempotencyRecord)
                            .where(
                                IdempotencyRecord.scope == key,
                                IdempotencyRecord.created_at == record.created_at,
                            )
                            .execution_options(synchronize_session=False)
                        )
                        session.expunge(record)  # the new row reuses its identity
                    session.add(
                        IdempotencyRecord(
                            scope=key,
                            request_hash=fingerprint,
                            status="in_progress",
                            created_at=now,
                            expires_at=now + timedelta(seconds=ttl_s),
                        )
                    )
                    session.flush()
                return Begin("new")
            except IntegrityError:
                continue  # someone else reserved it first: read what they wrote
        raise RuntimeError(f"could not reserve idempotency scope {key!r}")

    async def complete(self, scope: str, status: int, headers: dict[str, str], body: bytes) -> None:
        """See :meth:`IdempotencyStore.complete`."""
        await asyncio.to_thread(self._complete, self._key(scope), status, headers, body)

    def _complete(self, key: str, status: int, headers: dict[str, str], body: bytes) -> None:
        with session_scope(self._url) as session:
            session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.scope == key, IdempotencyRecord.status == "in_progress")
                .values(
                    status="completed",
                    response_status=status,
                    response_headers=headers,
                    response_body=base64.b64encode(body).decode("ascii"),
                )
            )

    async def abandon(self, scope: str) -> None:
        """See :meth:`IdempotencyStore.abandon`."""
        await asyncio.to_thread(self._abandon, self._key(scope))

    def _abandon(self, key: str) -> None:
        with session_scope(self._url) as session:
            session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.scope == key, IdempotencyRecord.status == "in_progress"
                )
            )

    async def purge_expired(self) -> int:
        """Delete expired records (they are ignored anyway); returns how many went."""

        def purge() -> int:
            with session_scope(self._url) as session:
                result = session.execute(
                    delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= utcnow())
                )
                return int(getattr(result, "rowcount", 0) or 0)

        return await asyncio.to_thread(purge)


def _found(
    request_hash: str,
    status: str,
    fingerprint: str,
    response_status: int | None,
    response_headers: dict[str, Any] | None,
    response_body: str | None,
) -> Begin:
    if request_hash != fingerprint:
        return Begin("mismatch")
    if status != "completed" or response_status is None:
        return Begin("in_progress")
    return Begin(
        "replay",
        status=response_status,
        headers={str(k): str(v) for k, v in (response_headers or {}).items()},
        body=base64.b64decode(response_body or ""),
    )


# Reserve unless a live record exists; a stale reservation (ARGV[3] is the cutoff)
# is replaced. One script, so two replicas can never both take the key.
_BEGIN_LUA = """
local current = redis.call('GET', KEYS[1])
if current then
  local record = cjson.decode(current)
  if record.state ~= 'in_progress' or tonumber(record.started) >= tonumber(ARGV[3]) then
    return current
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""

_COMPLETE_LUA = """
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current).state == 'in_progress' then
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
end
return 0
"""

_ABANDON_LUA = """
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current).state == 'in_progress' then
  redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisIdempotencyStore:
    """Records as JSON strings under ``vs:idem:{scope}`` with a Redis expiry.

    Args:
        redis_url: ``redis://host:port/db``.
        lock_timeout_s: Age after which an unfinished reservation is taken over.
    """

    def __init__(self, redis_url: str, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(redis_url)
        self._lock_timeout_s = lock_timeout_s
        self._begin = self._redis.register_script(_BEGIN_LUA)
        self._complete = self._redis.register_script(_COMPLETE_LUA)
        self._abandon = self._redis.register_script(_ABANDON_LUA)

    async def begin(self, scope: str, fingerprint: str, ttl_s: float = DEFAULT_TTL_S) -> Begin:
        """See :meth:`IdempotencyStore.begin`."""
        reservation = json.dumps(
            {"state": "in_progress", "hash": fingerprint, "started": time.time()}
        )
        current = await self._begin(
            keys=[f"vs:idem:{scope}"],
            args=[reservation, max(1, int(ttl_s * 1000)), _stale_before(self._lock_timeout_s)],
        )
        if current is None:
            return Begin("new")
        record = json.loads(current)
        return _found(
            record["hash"],
            record["state"],
            fingerprint,
            record.get("status"),
            record.get("headers"),
            record.get("body"),
        )

    async def complete(self, scope: str, status: int, headers: dict[str, str], body: bytes) -> None:
        """See :meth:`IdempotencyStore.complete`."""
        key = f"vs:idem:{scope}"
        current = await self._redis.get(key)
        if current is None:
            return
        record = json.loads(current)
        record.update(
            state="completed",
            status=status,
            headers=headers,
            body=base64.b64encode(body).decode("ascii"),
        )
        await self._complete(keys=[key], args=[json.dumps(record)])

    async def abandon(self, scope: str) -> None:
        """See :meth:`IdempotencyStore.abandon`."""
        await self._abandon(keys=[f"vs:idem:{scope}"])

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def make_idempotency_store(settings: Settings) -> IdempotencyStore:
    """Redis-backed when ``settings.redis_url`` is set, SQL (``database_url``) otherwise."""
    if settings.redis_url:
        return RedisIdempotencyStore(settings.redis_url)
    assert settings.database_url is not None  # filled in by Settings' validator
    return SqlIdempotencyStore(settings.database_url)


# --- ASGI middleware -------------------------------------------------------------------

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
