"""Redis limiters share their counts between instances (replicas)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from visionserve.errors import RateLimited
from visionserve.store.ratelimit import RedisConcurrencyLimiter, RedisRateLimiter

pytestmark = pytest.mark.services

REDIS_URL = "redis://127.0.0.1:6379/15"
NOW = 1_704_067_195.5


@pytest.fixture
def sync_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def prefix(sync_redis: redis.Redis) -> Iterator[str]:
    """A unique key prefix; only keys under it are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex}"
    yield prefix
    for pattern in (f"vs:rl:{prefix}*", f"vs:cc:{prefix}*"):
        for key in sync_redis.scan_iter(match=pattern):
            sync_redis.delete(key)


async def test_two_instances_share_the_count(prefix: str, sync_redis: redis.Redis) -> None:
    one = RedisRateLimiter(REDIS_URL, clock=lambda: NOW)
    two = RedisRateLimiter(REDIS_URL, clock=lambda: NOW)
    key = f"{prefix}:k"
    try:
        first = [await one.hit(key, 5) for _ in range(3)]
        second = [await two.hit(key, 5) for _ in range(2)]
        assert all(d.allowed for d in first + second)
        assert [d.remaining for d in first + second] == [4, 3, 2, 1, 0]

        for limiter in (one, two):
            refused = await limiter.hit(key, 5)
            assert not refused.allowed
            assert refused.remaining == 0
            assert refused.reset == 1_704_067_200
            assert refused.headers()["Retry-After"] == "5"

        assert (await one.hit(f"{prefix}:other", 5)).remaining == 4
        ttl = sync_redis.ttl(f"vs:rl:{key}:1704067140")
        assert 0 < ttl <= 120
    finally:
        await one.aclose()
        await two.aclose()


async def test_concurrency_across_instances(prefix: str, sync_redis: redis.Redis) -> None:
    one = RedisConcurrencyLimiter(REDIS_URL)
    two = RedisConcurrencyLimiter(REDIS_URL)
    key = f"{prefix}:jobs"
    try:
        async with one.concurrency(key, 2), two.concurrency(key, 2):
            for limiter in (one, two):
                with pytest.raises(RateLimited, match="Too many concurrent jobs"):
                    async with limiter.concurrency(key, 2):
                        pass
        # Both slots came back, and the counter is gone rather than negative.
        assert sync_redis.get(f"vs:cc:{key}") is None
        async with two.concurrency(key, 2), one.concurrency(key, 2):
            pass
    finally:
        await one.aclose()
        await two.aclose()
