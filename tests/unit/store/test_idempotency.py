"""Idempotency-Key middleware over the SQL store on a temporary SQLite file."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from visionserve.api.idempotency import IdempotencyMiddleware
from visionserve.settings import Settings
from visionserve.store.idempotency import (
    RedisIdempotencyStore,
    SqlIdempotencyStore,
    idempotency_scope,
    make_idempotency_store,
    request_fingerprint,
)


def render_error(scope: object, status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class App:
    """A tiny Starlette app that counts handler calls."""

    def __init__(self, store: SqlIdempotencyStore, ttl_s: float = 86400) -> None:
        self.calls: Counter[str] = Counter()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.asgi = Starlette(
            routes=[
                Route("/jobs", self.jobs, methods=["POST", "GET"]),
                Route("/fail", self.fail, methods=["POST"]),
                Route("/slow", self.slow, methods=["POST"]),
            ],
            middleware=[
                Middleware(IdempotencyMiddleware, store=store, on_error=render_error, ttl_s=ttl_s)
            ],
        )

    async def jobs(self, request: Request) -> Response:
        self.calls["jobs"] += 1
        body = await request.json() if request.method == "POST" else None
        return JSONResponse(
            {"n": self.calls["jobs"], "echo": body}, status_code=201, headers={"X-Job": "yes"}
        )

    async def fail(self, request: Request) -> Response:
        self.calls["fail"] += 1
        return JSONResponse({"error": "boom"}, status_code=500)

    async def slow(self, request: Request) -> Response:
        self.calls["slow"] += 1
        self.entered.set()
        await self.release.wait()
        return JSONResponse({"done": True})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.asgi), base_url="http://t")


@pytest.fixture
def store(tmp_path: Path) -> SqlIdempotencyStore:
    return SqlIdempotencyStore(f"sqlite:///{tmp_path}/t.db")


async def test_same_key_and_body_is_replayed(store: SqlIdempotencyStore) -> None:
    app = App(store)
    async with app.client() as client:
        first = await client.post("/jobs", json={"a": 1}, headers={"Idempotency-Key": "k1"})
        second = await client.post("/jobs", json={"a": 1}, headers={"Idempotency-Key": "k1"})

    assert app.calls["jobs"] == 1
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["X-Job"] == "yes"
    assert second.headers["content-type"] == first.headers["content-type"]
    assert "Idempotent-Replayed" not in first.headers


async def test_same_key_different_body_is_refused(store: SqlIdempotencyStore) -> None:
    app = App(store)
    async with app.client() as client:
        await client.post("/jobs", json={"a": 1}, headers={"Idempotency-Key": "k1"})
        reused = await client.post("/jobs", json={"a": 2}, headers={"Idempotency-Key": "k1"})

    assert reused.status_code == 422
    assert reused.json()["error"] == {
        "code": "idempotency_key_reused",
        "message": "Idempotency-Key reused with a different request",
    }
    assert app.calls["jobs"] == 1


async def test_without_key_every_request_is_processed(store: SqlIdempotencyStore) -> None:
    app = App(store)
    async with app.client() as client:
        for _ in range(2):
            assert (await client.post("/jobs", json={"a": 1})).status_code == 201
        # GET is never cached, key or not.
        await client.get("/jobs", headers={"Idempotency-Key": "k1"})
        await client.get("/jobs", headers={"Idempotency-Key": "k1"})
    assert app.calls["jobs"] == 4


async def test_keys_are_scoped_to_the_caller(store: SqlIdempotencyStore) -> None:
    app = App(store)
    async with app.client() as client:
        for token in ("alice", "bob"):
            response = await client.post(
                "/jobs",
                json={"a": 1},
                headers={"Idempotency-Key": "k1", "Authorization": f"Bearer {token}"},
            )
            assert "Idempotent-Replayed" not in response.headers
    assert app.calls["jobs"] == 2


async def test_overlong_key_is_a_bad_request(store: SqlIdempotencyStore) -> None:
    app = App(store)
    async with app.client() as client:
        response = await client.post("/jobs", json={}, headers={"Idempotency-Key": "x" * 256})
        accepted = await client.post("/jobs", json={}, headers={"Idempotency-Key": "x" * 255})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert accepted.status_code == 201
    assert app.calls["jobs"] == 1


async def test_server_errors_are_not_cached(store: SqlIdempotencyStore) -> None:
    app = App(store)
    async with app.client() as client:
        for _ in range(2):
            response = await client.post("/fail", json={}, headers={"Idempotency-Key": "k1"})
            assert response.status_code == 500
            assert "Idempotent-Replayed" not in response.headers
    assert app.calls["fail"] == 2


async def test_concurrent_request_with_same_key_is_in_progress(
    store: SqlIdempotencyStore,
) -> None:
    app = App(store)
    headers = {"Idempotency-Key": "k1"}
    async with app.client() as client:
        first = asyncio.create_task(client.post("/slow", json={}, headers=headers))
        await asyncio.wait_for(app.entered.wait(), 10)
        busy = await client.post("/slow", json={}, headers=headers)
        app.release.set()
        done = await first
        replay = await client.post("/slow", json={}, headers=headers)

    assert busy.status_code == 409
    assert busy.json()["error"]["message"] == (
        "A request with this Idempotency-Key is still in progress"
    )
    assert done.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert app.calls["slow"] == 1


async def test_expired_record_is_processed_again(store: SqlIdempotencyStore) -> None:
    app = App(store, ttl_s=0.2)
    async with app.client() as client:
        await client.post("/jobs", json={"a": 1}, headers={"Idempotency-Key": "k1"})
        await asyncio.sleep(0.3)
        again = await client.post("/jobs", json={"a": 1}, headers={"Idempotency-Key": "k1"})
    assert "Idempotent-Replayed" not in again.headers
    assert again.json()["n"] == 2


async def test_stale_reservation_is_taken_over(tmp_path: Path) -> None:
    store = SqlIdempotencyStore(f"sqlite:///{tmp_path}/t.db", lock_timeout_s=0)
    assert (await store.begin("s", "h")).state == "new"
    await asyncio.sleep(0.01)
    assert (await store.begin("s", "h")).state == "new"  # its owner is presumed dead


async def test_long_scopes_fit_the_column(store: SqlIdempotencyStore) -> None:
    scope = idempotency_scope("auth-" + "f" * 64, "POST", "/" + "p" * 200, "k" * 255)
    fingerprint = request_fingerprint("POST", "/x", b"{}")
    assert (await store.begin(scope, fingerprint)).state == "new"
    await store.complete(scope, 200, {"content-type": "text/plain"}, b"ok")
    replay = await store.begin(scope, fingerprint)
    assert (replay.state, replay.status, replay.body) == ("replay", 200, b"ok")


def test_factory_picks_backend_from_settings(tmp_path: Path) -> None:
    assert isinstance(make_idempotency_store(Settings(home=tmp_path)), SqlIdempotencyStore)
    cluster = Settings(home=tmp_path, redis_url="redis://127.0.0.1:6379/15")
    assert isinstance(make_idempotency_store(cluster), RedisIdempotencyStore)
