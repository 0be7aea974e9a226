"""Per-key rate limits: fixed one-minute windows and concurrent-job caps.

Windows are aligned to the minute, so every replica agrees on when a window ends
and ``X-RateLimit-Reset`` is simply the unix time of the next minute boundary.
The in-process limiters serve one machine; the Redis ones share counts between
replicas (see ``make_rate_limiter`` / ``make_concurrency_limiter``).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from visionserve.errors import RateLimited

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from visionserve.settings import Settings

WINDOW_S = 60

Clock = Callable[[], float]


@dataclass(frozen=True)
class RateDecision:
    """The outcome of one :meth:`RateLimiter.hit`.

    Attributes:
        limit: Requests allowed per window.
        remaining: Requests left in the current window (never negative).
        reset: Unix time (seconds) at which the current window ends.
        allowed: Whether this hit fits within the limit.
        retry_after: Seconds until the window ends (at least 1).
    """

    limit: int
    remaining: int
    reset: int
    allowed: bool
    retry_after: int = 1

    def headers(self) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers, plus ``Retry-After`` when refused."""
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after)
        return out


class RateLimiter(Protocol):
    """Counts hits per key in fixed one-minute windows."""

    async def hit(self, key: str, limit: int, *, cost: int = 1) -> RateDecision:
        """Count ``cost`` hits against ``key`` and say whether they fit in ``limit``.

        A refused hit is not counted, so a large ``cost`` that does not fit leaves
        the remaining budget to smaller requests.
        """
        ...


class ConcurrencyLimiter(Protocol):
    """Caps how many holders of one key run at the same time."""

    def concurrency(self, key: str, max_concurrent: int) -> AbstractAsyncContextManager[None]:
        """Hold one of ``max_concurrent`` slots of ``key`` for the ``async with`` block.

        Raises:
            RateLimited: All slots of ``key`` are taken.
        """
        ...


def _window(now: float) -> tuple[int, int, int]:
    """(window start, window end, seconds until the end, at least 1)."""
    start = int(now // WINDOW_S) * WINDOW_S
    end = start + WINDOW_S
    return start, end, max(1, math.ceil(end - now))


def _decision(limit: int, count: int, allowed: bool, reset: int, retry_after: int) -> RateDecision:
    return RateDecision(
        limit=limit,
        remaining=max(0, limit - count),
        reset=reset,
        allowed=allowed,
        retry_after=retry_after,
    )


def _too_many(max_concurrent: int) -> RateLimited:
    return RateLimited(
        "Too many concurrent jobs",
        details={"max_concurrent": max_concurrent},
        headers={"Retry-After": "1"},
    )


class InProcessRateLimiter:
    """Fixed-window counters in a dict; for one process.

    A lock (not an asyncio one) guards the dict, since Ray Serve may call a replica
    from several threads; nothing inside it awaits, so it never blocks the loop long.

    Args:
        clock: Unix time source; tests pin it so a run never straddles a window.
    """

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (window start, count)
        self._next_sweep = 0

    async def hit(self, key: str, limit: int, *, cost: int = 1) -> RateDecision:
        """See :meth:`RateLimiter.hit`."""
        start, end, retry_after = _window(self._clock())
        with self._lock:
            if start >= self._next_sweep:
                # Drop counters of past windows once per window so idle keys don't pile up.
                self._counts = {k: v for k, v in self._counts.items() if v[0] >= start}
                self._next_sweep = end
            window, count = self._counts.get(key, (start, 0))
            if window != start:
                count = 0
            allowed = count + cost <= limit
            if allowed:
                count += cost
                self._counts[key] = (start, count)
        return _decision(limit, count, allowed, end, retry_after)


class InProcessConcurrencyLimiter:
    """Concurrent-holder counts in a dict; for one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    @asynccontextmanager
    async def concurrency(self, key: str, max_concurrent: int) -> AsyncIterator[None]:
        """See :meth:`ConcurrencyLimiter.concurrency`."""
        with self._lock:
            held = self._held.get(key, 0)
            if held >= max_concurrent:
                raise _too_many(max_concurrent)
            self._held[key] = held + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._held.get(key, 1) - 1
                if left > 0:
                    self._held[key] = left
                else:
                    self._held.pop(key, None)


# Count, refund a refused hit, and set the expiry on the first hit of a window: all in
# one round trip and atomic, so replicas never see a counter without a TTL.
_HIT_LUA = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if count == tonumber(ARGV[1]) then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
if count > tonumber(ARGV[2]) then
  count = redis.call('DECRBY', KEYS[1], ARGV[1])
  return {count, 0}
end
return {count, 1}
"""

_ACQUIRE_LUA = """
local held = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if held > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
return 1
"""

# Never below zero: a key that expired while its holders still ran comes back empty.
_RELEASE_LUA = """
if redis.call('DECR', KEYS[1]) <= 0 then
  redis.call('DEL', KEYS[1])
end
return 0
"""


def _redis_client(redis_url: str) -> Redis:
    from redis.asyncio import Redis

    return Redis.from_url(redis_url)


class RedisRateLimiter:
    """Fixed-window counters in Redis, shared by every replica.

    Keys are ``vs:rl:{key}:{window_start}`` and expire shortly after their window.

    Args:
        redis_url: ``redis://host:port/db``.
        clock: Unix time source (the window is chosen client side).
    """

    def __init__(self, redis_url: str, *, clock: Clock = time.time) -> None:
        self._redis = _redis_client(redis_url)
        self._clock = clock
        self._script = self._redis.register_script(_HIT_LUA)

    async def hit(self, key: str, limit: int, *, cost: int = 1) -> RateDecision:
        """See :meth:`RateLimiter.hit`."""
        start, end, retry_after = _window(self._clock())
        # The TTL is relative and generous, so clock skew between replicas can't expire
        # a live window early.
        count, allowed = await self._script(
            keys=[f"vs:rl:{key}:{start}"], args=[cost, limit, 2 * WINDOW_S]
        )
        return _decision(limit, int(count), bool(allowed), end, retry_after)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


class RedisConcurrencyLimiter:
    """Concurrent-holder counts in Redis (``vs:cc:{key}``), shared by every replica.

    Args:
        redis_url: ``redis://host:port/db``.
        ttl_s: Safety expiry, refreshed on each acquire, so slots leaked by a crashed
            replica come back once the key has been idle that long.
    """

    def __init__(self, redis_url: str, *, ttl_s: int = 3600) -> None:
        self._redis = _redis_client(redis_url)
        self._ttl_s = ttl_s
        self._acquire = self._redis.register_script(_ACQUIRE_LUA)
        self._release = self._redis.register_script(_RELEASE_LUA)

    @asynccontextmanager
    async def concurrency(self, key: str, max_concurrent: int) -> AsyncIterator[None]:
        """See :meth:`ConcurrencyLimiter.concurrency`."""
        name = f"vs:cc:{key}"
        if not await self._acquire(keys=[name], args=[max_concurrent, self._ttl_s]):
            raise _too_many(max_concurrent)
        try:
            yield
        finally:
            # Shielded: a cancelled holder must still give its slot back.
            await asyncio.shield(self._release(keys=[name]))

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def make_rate_limiter(settings: Settings) -> RateLimiter:
    """Redis-backed when ``settings.redis_url`` is set, in-process otherwise."""
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url)
    return InProcessRateLimiter()


def make_concurrency_limiter(settings: Settings) -> ConcurrencyLimiter:
    """Redis-backed when ``settings.redis_url`` is set, in-process otherwise."""
    if settings.redis_url:
        return RedisConcurrencyLimiter(settings.redis_url)
    return InProcessConcurrencyLimiter()
