"""In-process rate and concurrency limiters."""

from __future__ import annotations

import asyncio

import pytest

from visionserve.errors import RateLimited
from visionserve.settings import Settings
from visionserve.store.ratelimit import (
    InProcessConcurrencyLimiter,
    InProcessRateLimiter,
    RedisConcurrencyLimiter,
    RedisRateLimiter,
    make_concurrency_limiter,
    make_rate_limiter,
)

NOW = 1_704_067_195.5  # 4.5 s before the minute boundary 1704067200


async def test_three_allowed_then_refused_with_reset_at_minute_boundary() -> None:
    limiter = InProcessRateLimiter(clock=lambda: NOW)
    decisions = [await limiter.hit("key-a", 3) for _ in range(4)]

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    refused = decisions[-1]
    assert refused.reset == 1_704_067_200
    assert refused.headers() == {
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "1704067200",
        "Retry-After": "5",
    }
    assert "Retry-After" not in decisions[0].headers()


async def test_keys_are_independent_and_windows_reset() -> None:
    now = [NOW]
    limiter = InProcessRateLimiter(clock=lambda: now[0])
    for _ in range(2):
        await limiter.hit("key-a", 2)
    assert not (await limiter.hit("key-a", 2)).allowed
    assert (await limiter.hit("key-b", 2)).remaining == 1

    now[0] += 5  # the next window
    fresh = await limiter.hit("key-a", 2)
    assert fresh.allowed and fresh.remaining == 1 and fresh.reset == 1_704_067_260


async def test_refused_cost_is_not_counted() -> None:
    limiter = InProcessRateLimiter(clock=lambda: NOW)
    assert (await limiter.hit("k", 5, cost=3)).remaining == 2
    assert not (await limiter.hit("k", 5, cost=3)).allowed
    assert (await limiter.hit("k", 5, cost=2)).allowed


async def test_concurrency_refuses_fifth_holder_and_frees_on_exit() -> None:
    limiter = InProcessConcurrencyLimiter()
    release = asyncio.Event()
    entered = 0

    async def hold() -> None:
        nonlocal entered
        async with limiter.concurrency("key-a", 4):
            entered += 1
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(4)]
    while entered < 4:
        await asyncio.sleep(0)

    with pytest.raises(RateLimited, match="Too many concurrent jobs") as refused:
        async with limiter.concurrency("key-a", 4):
            pass
    assert refused.value.status == 429
    async with limiter.concurrency("key-b", 4):  # another key is unaffected
        pass

    release.set()
    await asyncio.gather(*holders)
    async with limiter.concurrency("key-a", 4):  # slots came back
        pass


async def test_slot_is_freed_when_the_body_raises() -> None:
    limiter = InProcessConcurrencyLimiter()
    with pytest.raises(ValueError):
        async with limiter.concurrency("k", 1):
            raise ValueError("boom")
    async with limiter.concurrency("k", 1):
        pass


def test_factories_pick_backend_from_settings(tmp_path) -> None:
    local = Settings(home=tmp_path)
    assert isinstance(make_rate_limiter(local), InProcessRateLimiter)
    assert isinstance(make_concurrency_limiter(local), InProcessConcurrencyLimiter)
    cluster = Settings(home=tmp_path, redis_url="redis://127.0.0.1:6379/15")
    assert isinstance(make_rate_limiter(cluster), RedisRateLimiter)
    assert isinstance(make_concurrency_limiter(cluster), RedisConcurrencyLimiter)
