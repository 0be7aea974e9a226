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
