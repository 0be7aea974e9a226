"""The IdempotencyStore contract on PostgreSQL and on Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import cache

import psycopg
import pytest
import redis
from sqlalchemy import delete

from visionserve.store.db import session_scope
from visionserve.store.idempotency import (
    IdempotencyStore,
    RedisIdempotencyStore,
    SqlIdempotencyStore,
)
from visionserve.store.records import IdempotencyRecord

pytestmark = pytest.mark.services

REDIS_URL = "redis://127.0.0.1:6379/15"


@cache
def postgres_url() -> str:
    """The first local role that can connect (CI images use postgres, some use root)."""
    errors = []
    for user in ("postgres", "root"):
        url = f"postgresql://{user}@127.0.0.1:5432/test"
        try:
            psycopg.connect(url, connect_timeout=5).close()
            return url
        except psycopg.OperationalError as exc:
            errors.append(str(exc))
    raise RuntimeError(f"no PostgreSQL role can connect: {errors}")


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex}:"


@pytest.fixture(params=["postgresql", "redis"])
def backend(request: pytest.FixtureRequest, prefix: str) -> Iterator[str]:
    """Which store to test; afterwards deletes only what this test wrote."""
    yield request.param
    if request.param == "redis":
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"vs:idem:{prefix}*"):
            client.delete(key)
        client.close()
    else:
        with session_scope(postgres_url()) as session:
            session.execute(
                delete(IdempotencyRecord).where(IdempotencyRecord.scope.startswith(prefix))
            )


@asynccontextmanager
async def open_store(backend: str, lock_timeout_s: float = 600) -> AsyncIterator[IdempotencyStore]:
    if backend == "redis":
        store = RedisIdempotencyStore(REDIS_URL, lock_timeout_s=lock_timeout_s)
        try:
            yield store
        finally:
            await store.aclose()
    else:
        yield SqlIdempotencyStore(postgres_url(), lock_timeout_s=lock_timeout_s)


async def test_contract(backend: str, prefix: str) -> None:
    scope = prefix + "POST:/jobs:k1"
    async with open_store(backend) as store:
        assert (await store.begin(scope, "h1")).state == "new"
        assert (await store.begin(scope, "h1")).state == "in_progress"
        assert (await store.begin(scope, "h2")).state == "mismatch"

        await store.complete(scope, 201, {"content-type": "application/json"}, b'{"id": 1}')
        replay = await store.begin(scope, "h1")
        assert replay.state == "replay"
        assert replay.status == 201
        assert replay.headers == {"content-type": "application/json"}
        assert replay.body == b'{"id": 1}'
        assert (await store.begin(scope, "h2")).state == "mismatch"

        await store.abandon(scope)  # a completed record is kept
        assert (await store.begin(scope, "h1")).state == "replay"


async def test_abandon_lets_the_client_retry(backend: str, prefix: str) -> None:
    scope = prefix + "POST:/jobs:k2"
    async with open_store(backend) as store:
        assert (await store.begin(scope, "h1")).state == "new"
        await store.abandon(scope)
        assert (await store.begin(scope, "h2")).state == "new"


async def test_expired_record_is_absent(backend: str, prefix: str) -> None:
    scope = prefix + "POST:/jobs:k3"
    async with open_store(backend) as store:
        assert (await store.begin(scope, "h1", ttl_s=0.2)).state == "new"
        await store.complete(scope, 200, {}, b"old")
        await asyncio.sleep(0.4)
        assert (await store.begin(scope, "h2")).state == "new"


async def test_stale_reservation_is_taken_over(backend: str, prefix: str) -> None:
    scope = prefix + "POST:/jobs:k4"
    async with open_store(backend, lock_timeout_s=0.1) as store:
        assert (await store.begin(scope, "h1")).state == "new"
        await asyncio.sleep(0.2)
        assert (await store.begin(scope, "h1")).state == "new"


async def test_racing_begins_have_one_winner(backend: str, prefix: str) -> None:
    scope = prefix + "POST:/jobs:k5"
    async with open_store(backend) as store:
        results = await asyncio.gather(*(store.begin(scope, "h1") for _ in range(8)))
    states = sorted(r.state for r in results)
    assert states == ["in_progress"] * 7 + ["new"]
