"""The ingress app in-process (no Ray): routing, errors per surface, auth, limits, bodies."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from tests import sample_jobs
from visionserve.api.app import create_app
from visionserve.platform.context import build_context
from visionserve.surfaces import NAMES, load_surface

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def ctx(settings):  # type: ignore[no-untyped-def]
    async def status() -> dict[str, str]:
        return {"ingress": "HEALTHY", "job-worker": "HEALTHY"}

    return build_context(settings, cluster_status=status)


@pytest.fixture
async def client(ctx):  # type: ignore[no-untyped-def]
    app = create_app(ctx, [*(load_surface(n) for n in NAMES), sample_jobs.SURFACE])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


@pytest.fixture
def key(ctx) -> str:  # type: ignore[no-untyped-def]
    token, _ = ctx.keys.create("tests")
    return token


async def test_health_ready_and_request_ids(client) -> None:  # type: ignore[no-untyped-def]
    r = await client.get("/health")
    body = r.json()
    assert r.status_code == 200 and body["status"] == "ok"
    assert body["deployments"] == {"ingress": "HEALTHY", "job-worker": "HEALTHY"}
    assert body["surfaces"]["inspect"] == "/inspect/api"
    assert len(r.headers["X-Request-ID"]) == 32
    r = await client.get("/ready", headers={"X-Request-ID": "abc-123"})
    assert r.json() == {
        "ready": True,
        "checks": {
            "database": "ok",
            "blobs": "ok",
            "deployment:ingress": "ok",
            "deployment:job-worker": "ok",
        },
    }
    assert r.headers["X-Request-ID"] == "abc-123"
    bad = await client.get("/health", headers={"X-Request-ID": "x" * 500})
    assert bad.headers["X-Request-ID"] != "x" * 500


async def test_health_shows_lost_replicas_and_why_a_deployment_waits(settings) -> None:  # type: ignore[no-untyped-def]
    stuck = (
        "Deployment 'ocr' has 1 replicas that have taken more than 30s to be scheduled. "
        'Resources required for each replica: {"CPU": 0.2}, total resources available: {}.'
    )

    async def status() -> dict[str, str]:
        return {"ingress": "HEALTHY", "ocr": "UPSCALING"}

    async def replicas() -> dict[str, dict[str, object]]:
        return {
            "ingress": {"replicas": {"RUNNING": 2}},
            "ocr": {"replicas": {"RUNNING": 1, "PENDING_ALLOCATION": 1}, "message": stuck},
        }

    ctx = build_context(settings, cluster_status=status, cluster_replicas=replicas)
    transport = httpx.ASGITransport(app=create_app(ctx, [load_surface("cutout")]))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        body = (await c.get("/health")).json()
    assert body["status"] == "degraded"
    assert body["replicas"] == {
        "ingress": {"RUNNING": 2},
        "ocr": {"RUNNING": 1, "PENDING_ALLOCATION": 1},
    }
    assert body["messages"] == {"ocr": stuck}
    assert body["scaling"] == {
        "ocr": {
            "state": "stuck",
            "reason": '1 replica(s) waiting for resources: each needs {"CPU": 0.2}, free {}',
        }
    }


async def test_health_tells_a_healthy_upscale_from_a_stuck_one(settings) -> None:  # type: ignore[no-untyped-def]
    slow = "Deployment 'edit' has 1 replicas that have taken more than 30s to initialize."
    status = {
        "ingress": "HEALTHY",
        "bg-u2netp": "UPSCALING",
        "upscale": "DOWNSCALING",
        "edit": "UPSCALING",
    }
    replicas = {
        "ingress": {"replicas": {"RUNNING": 1}},
        "bg-u2netp": {"replicas": {"RUNNING": 1, "STARTING": 1}},  # placed, loading
        "upscale": {"replicas": {"RUNNING": 1, "STOPPING": 1}},
        "edit": {"replicas": {"RUNNING": 1, "STARTING": 1}, "message": slow},
    }

    async def cluster_status() -> dict[str, str]:
        return status

    async def cluster_replicas() -> dict[str, dict[str, object]]:
        return replicas  # type: ignore[return-value]

    ctx = build_context(settings, cluster_status=cluster_status, cluster_replicas=cluster_replicas)
    transport = httpx.ASGITransport(app=create_app(ctx, [load_surface("cutout")]))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        body = (await c.get("/health")).json()
    assert body["scaling"] == {
        "bg-u2netp": {"state": "up", "reason": "1 replica(s) starting"},
        "upscale": {"state": "down", "reason": "stopping replicas above the target"},
        "edit": {"state": "slow", "reason": "1 replica(s) slow to initialize"},
    }
    # Once the new replica runs, Serve says HEALTHY again and nothing is resizing.
    status["bg-u2netp"] = "HEALTHY"
    replicas["bg-u2netp"] = {"replicas": {"RUNNING": 2}}
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        body = (await c.get("/health")).json()
    assert "bg-u2netp" not in body["scaling"]


async def test_each_surface_has_its_own_openapi(client) -> None:  # type: ignore[no-untyped-def]
    for surface in map(load_surface, NAMES):
        r = await client.get(f"{surface.mount}/openapi.json")
        assert r.status_code == 200, surface.name
        assert r.json()["info"]["title"] == f"VisionServe {surface.name}"
        assert (await client.get(f"{surface.mount}/docs")).status_code == 200


async def test_errors_use_each_contracts_format(client) -> None:  # type: ignore[no-untyped-def]
    r = await client.get("/cutout/nope")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    r = await client.get("/inspect/api/nope")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    r = await client.get("/documents/health")  # public in the contract
    assert r.status_code == 200 and r.json().startswith("OK - Version")
    r = await client.get("/sample/jobs/x")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert "Bearer" in r.json()["error"]["message"] and r.headers["X-Request-ID"]


async def test_auth_accepts_valid_keys_and_refuses_revoked(client, ctx, key) -> None:  # type: ignore[no-untyped-def]
    ok = await client.get("/sample/jobs/none", headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 404 and ok.json()["error"]["code"] == "not_found"
    wrong = await client.get("/sample/jobs/none", headers={"Authorization": "Bearer vs_x_y"})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "Invalid API key"
    basic = await client.get("/sample/jobs/none", headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401 and "Bearer" in basic.json()["error"]["message"]
    ctx.keys.revoke(key.split("_")[1])
    revoked = await client.get("/sample/jobs/none", headers={"Authorization": f"Bearer {key}"})
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]["message"]


@pytest.mark.parametrize("backend", ["memory", pytest.param("redis", marks=pytest.mark.services)])
async def test_rate_limit_headers_and_429(backend, settings, key) -> None:  # type: ignore[no-untyped-def]
    import secrets

    from tests.conftest import REDIS_URL

    if backend == "redis":
        settings.redis_url = REDIS_URL
        settings.limits.rate_limit_per_minute = 5
    app_ctx = build_context(settings)
    if backend == "redis":  # a unique surface name keeps runs apart on the shared server
        surface = dataclasses.replace(sample_jobs.SURFACE, name=f"sample{secrets.token_hex(4)}")
    else:
        surface = sample_jobs.SURFACE
    # Two ingress apps on one backend share the count (two replicas of the ingress).
    apps = [create_app(app_ctx if i == 0 else build_context(settings), [surface]) for i in range(2)]
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://t") for a in apps
    ]
    auth = {"Authorization": f"Bearer {key}"}
    seen = []
    for i in range(5):
        r = await clients[i % 2].get("/sample/jobs/none", headers=auth)
        seen.append(int(r.headers["X-RateLimit-Remaining"]))
        assert r.headers["X-RateLimit-Limit"] == "5"
    expected = [4, 3, 2, 1, 0] if backend == "redis" else [4, 4, 3, 3, 2]
    assert seen == expected
    if backend == "memory":  # in-process limits are per replica: exhaust this one
        for _ in range(2):
            await clients[0].get("/sample/jobs/none", headers=auth)
    r = await clients[0].get("/sample/jobs/none", headers=auth)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(r.headers["Retry-After"]) >= 1 and r.headers["X-RateLimit-Remaining"] == "0"
    assert int(r.headers["X-RateLimit-Reset"]) % 60 == 0
    for c in clients:
        await c.aclose()


async def test_serve_backpressure_becomes_503_with_retry_after(client, key) -> None:  # type: ignore[no-untyped-def]
    r = await client.get("/sample/busy", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.json()["error"]["code"] == "service_unavailable"


async def test_idempotent_replay_and_mismatch(client, key) -> None:  # type: ignore[no-untyped-def]
    h = {"Authorization": f"Bearer {key}", "Idempotency-Key": "abc"}
    first = await client.post("/sample/echo", json={"a": 1}, headers=h)
    again = await client.post("/sample/echo", json={"a": 1}, headers=h)
    assert first.json() == again.json() == {"echo": {"a": 1}, "calls": 1}
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await client.post("/sample/echo", json={"a": 2}, headers=h)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    fresh = await client.post("/sample/echo", json={"a": 1}, headers={**h, "Idempotency-Key": "d"})
    assert fresh.json()["calls"] == 2


async def test_job_is_committed_before_202(client, ctx, key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = await client.post(
        "/sample/jobs",
        json={"trace": str(tmp_path / "t")},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 202
    job = ctx.queue.get(r.json()["job_id"])  # a fresh session sees the committed row
    assert job.status == "queued" and job.kind == "sample.sleep"


@pytest.mark.parametrize("url", ["http://10.0.0.1/hook", "http://169.254.169.254/x"])
async def test_private_callback_urls_are_refused(client, key, url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = await client.post(
        "/sample/jobs",
        json={"trace": str(tmp_path / "t"), "webhook_url": url},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "url_not_allowed"


async def test_unhandled_errors_hide_internals(client, key, library_log) -> None:  # type: ignore[no-untyped-def]
    r = await client.post("/sample/crash", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 500
    request_id = r.headers["X-Request-ID"]
    message = f"Internal error while processing; see the server log for request {request_id}"
    assert r.json() == {"error": {"code": "internal_error", "message": message}}
    (logged,) = [x for x in library_log.records if x.exc_info]
    assert request_id in logged.getMessage() and "secret internals" in library_log.text


async def test_oversized_body_is_refused_in_the_surface_format(client, ctx) -> None:  # type: ignore[no-untyped-def]
    limit = ctx.settings.limits.max_request_bytes
    big = b"x" * (limit + 1)
    r = await client.post("/cutout/remove-background", content=big)
    assert r.status_code == 413 and r.json()["error"]["type"] == "image_too_large"
    r = await client.post("/documents/api/v1/task/parse", content=big)
    assert r.status_code == 413 and "limit" in r.json()

    async def chunks():  # no Content-Length: cut off once past the limit
        for _ in range(limit // (1 << 20) + 2):
            yield b"y" * (1 << 20)

    r = await client.post("/sample/echo", content=chunks())
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]


async def test_signed_blob_urls(client, ctx) -> None:  # type: ignore[no-untyped-def]
    ctx.blobs.put("results/a.png", b"\x89PNG-data", "image/png")
    url = ctx.blobs.url("results/a.png", 60)
    path = url.split("127.0.0.1:8000", 1)[1]
    r = await client.get(path)
    assert r.status_code == 200 and r.content == b"\x89PNG-data"
    assert r.headers["content-type"] == "image/png"
    r = await client.get(path.replace("sig=", "sig=0"))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


async def test_each_surface_limit_is_a_setting(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The contract's limit is the default; the operator's per-surface setting wins."""

    async def limit_seen(app_settings) -> tuple[str, int]:  # type: ignore[no-untyped-def]
        app = create_app(build_context(app_settings), [load_surface("cutout")])
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            statuses = [(await c.get("/cutout/preferences")).status_code for _ in range(3)]
            r = await c.get("/cutout/preferences")
            return r.headers["X-RateLimit-Limit"], statuses.count(429)

    assert await limit_seen(settings) == ("60", 0)  # the contract's 60/min
    settings.limits.rate_limit_per_minute = 1  # the default for surfaces without their own
    assert await limit_seen(settings) == ("60", 0)
    settings.limits.rate_limits = {"cutout": 2}
    assert await limit_seen(settings) == ("2", 1)

    monkeypatch.setenv("VISIONSERVE_LIMITS__RATE_LIMITS__CUTOUT", "600")
    from visionserve.settings import Settings

    assert Settings().limits.rate_limits == {"cutout": 600}


async def test_a_keyless_surface_ignores_a_proxys_basic_auth(settings) -> None:  # type: ignore[no-untyped-def]
    """A reverse proxy's Basic auth in front of inspect (no key) must not break it."""
    from visionserve.surfaces import load_surface

    app = create_app(build_context(settings), [load_surface("inspect")])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for header in ("Basic dXNlcjpwYXNz", "Token abc", "Bearer", "Bearer vs_stale_key"):
            r = await c.get("/inspect/api/projects", headers={"Authorization": header})
            assert r.status_code == 200, (header, r.text)
            assert isinstance(r.json(), list)


async def test_rate_limit_429_says_which_limit_and_when_it_resets(settings, key) -> None:  # type: ignore[no-untyped-def]
    from visionserve.store.ratelimit import InProcessRateLimiter

    settings.limits.rate_limits = {"sample": 2}
    ctx = build_context(settings)
    ctx.rate_limiter = InProcessRateLimiter(clock=lambda: 1_800_000_017.0)  # 43 s to the window end
    app = create_app(ctx, [sample_jobs.SURFACE])
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for _ in range(2):
            assert (await c.get("/sample/jobs/none", headers=auth)).status_code == 404
        r = await c.get("/sample/jobs/none", headers=auth)
    assert r.status_code == 429 and r.headers["Retry-After"] == "43"
    assert r.json()["error"]["message"] == (
        "Rate limit exceeded: 2 requests per minute; retry in 43 s"
    )
