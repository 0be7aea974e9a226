"""Application metrics without Ray: the catalogue, and what each part records.

Every part records into a :class:`MemoryMetrics`, which refuses a name or tag set the
catalogue does not declare, so these tests also prove the code and catalogue agree.
"""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from tests import sample_jobs
from tests.unit.platform.test_webhooks import add as add_webhook
from tests.unit.platform.test_webhooks import drain
from visionserve.api.app import create_app
from visionserve.platform import webhooks
from visionserve.platform.context import build_context
from visionserve.platform.egress import EgressPolicy
from visionserve.platform.job_metrics import export_queue_metrics
from visionserve.platform.metrics import (
    CATALOGUE,
    JOB_PROGRESS,
    JOB_TRANSITIONS,
    JOBS_PROCESSING,
    QUEUE_DEPTH,
    QUEUE_OLDEST_AGE,
    REQUEST_LATENCY,
    REQUESTS,
    WEBHOOK_DELIVERIES,
    MemoryMetrics,
)
from visionserve.platform.worker import JobContext, JobKind, Worker
from visionserve.settings import EgressSettings
from visionserve.store.db import session_scope
from visionserve.store.job_views import list_jobs
from visionserve.store.queue import enqueue
from visionserve.surfaces import load_surface

# Labels Ray adds to every series: ours must not collide with them.
RAY_LABELS = {"Component", "NodeAddress", "SessionName", "Version", "WorkerId", "le"}


def test_catalogue_names_tags_and_buckets() -> None:
    for name, spec in CATALOGUE.items():
        assert name == spec.name and re.fullmatch(r"visionserve_[a-z0-9_]+", name)
        # Ray appends _total to a counter: a name ending in it would read _total_total.
        assert not (spec.kind == "counter" and name.endswith("_total")), name
        assert spec.description.endswith(".") and len(spec.description) > 20
        assert spec.tags and not set(spec.tags) & RAY_LABELS, name
        assert all(re.fullmatch(r"[a-z_]+", tag) for tag in spec.tags)
        if spec.kind == "histogram":
            assert list(spec.buckets) == sorted(set(spec.buckets)) and spec.buckets[0] > 0
        else:
            assert not spec.buckets
    assert CATALOGUE[REQUESTS].exported == "ray_visionserve_requests_total"
    assert CATALOGUE[QUEUE_DEPTH].exported == "ray_visionserve_queue_depth"


def test_memory_metrics_refuse_what_the_catalogue_does_not_declare() -> None:
    metrics = MemoryMetrics()
    with pytest.raises(KeyError, match="not in the catalogue"):
        metrics.inc("visionserve_nope", {})
    with pytest.raises(TypeError, match="is a counter"):
        metrics.set(REQUESTS, 1.0, {"surface": "a", "route": "b", "method": "c", "status": "d"})
    with pytest.raises(ValueError, match="takes tags"):
        metrics.inc(WEBHOOK_DELIVERIES, {"outcome": "delivered", "url": "http://x"})
    metrics.inc(WEBHOOK_DELIVERIES, {"outcome": "delivered"}, 2)
    assert metrics.value(WEBHOOK_DELIVERIES, outcome="delivered") == 2.0


@pytest.fixture
def database_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    """SQLite only: what is recorded does not depend on the database."""
    return f"sqlite:///{tmp_path / 'records.db'}"


@pytest.fixture
def metrics() -> MemoryMetrics:
    return MemoryMetrics()


@pytest.fixture
async def client(settings, metrics):  # type: ignore[no-untyped-def]
    ctx = build_context(settings, metrics=metrics)
    app = create_app(ctx, [load_surface("cutout"), load_surface("documents"), sample_jobs.SURFACE])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_requests_are_counted_by_surface_route_template_and_status(client, metrics) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2):
        assert (await client.get("/health")).status_code == 200
    assert (await client.get("/cutout/jobs/abc")).status_code == 404
    assert (await client.get("/cutout/jobs/def")).status_code == 404
    assert (await client.get("/documents/api/v1/task/t1")).status_code == 401
    assert (await client.get("/wp-admin/setup.php")).status_code == 404
    assert (await client.get("/cutout/no-such-route")).status_code == 404
    assert (await client.request("BREW", "/health")).status_code == 405

    def count(surface: str, route: str, status: str, method: str = "GET") -> float | None:
        return metrics.value(REQUESTS, surface=surface, route=route, method=method, status=status)

    assert count("platform", "/health", "200") == 2
    # The route's template, not the path: two job ids are one series.
    assert count("cutout", "/cutout/jobs/{job_id}", "404") == 2
    assert count("documents", "/documents/api/v1/task/{task_id}", "401") == 1
    # Paths no route matches share one series per surface, and made-up methods one too.
    assert count("platform", "unmatched", "404") == 1
    assert count("cutout", "unmatched", "404") == 1
    assert count("platform", "/health", "405", method="OTHER") == 1
    assert metrics.count(REQUEST_LATENCY, surface="platform", route="/health") == 3
    latencies = metrics.observations[REQUEST_LATENCY]
    assert all(v >= 0 for series in latencies.values() for v in series)
    raw_paths = [dict(k)["route"] for k in metrics.counters[REQUESTS]]
    assert not any("abc" in r or "wp-admin" in r for r in raw_paths), raw_paths


async def test_a_refused_body_is_counted_in_its_surface(settings, metrics) -> None:  # type: ignore[no-untyped-def]
    small = settings.model_copy(
        update={"limits": settings.limits.model_copy(update={"max_request_bytes": 10})}
    )
    app = create_app(build_context(small, metrics=metrics), [load_surface("cutout")])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.post("/cutout/upscale", content=b"x" * 100)
    assert r.status_code == 413
    tags = {"surface": "cutout", "method": "POST", "status": "413"}
    assert (
        sum(v for k, v in metrics.counters[REQUESTS].items() if tags.items() <= dict(k).items())
        == 1
    )


async def stepped(ctx: JobContext) -> dict:  # type: ignore[type-arg]
    for step in range(4):
        ctx.progress(step / 4, f"epoch {step + 1}/4", {"epoch": step + 1, "loss": 1 / (step + 1)})
        ctx.progress(step / 4)  # a repeat: no second line
        await asyncio.sleep(0.3)
    return {"ok": True}


async def broken(ctx: JobContext) -> dict:  # type: ignore[type-arg]
    raise ValueError("no")


def add(settings, kind: str) -> str:  # type: ignore[no-untyped-def]
    with session_scope(settings.database_url) as s:
        return enqueue(s, surface="t", kind=kind, payload={}, settings=settings.jobs).id


async def test_worker_counts_transitions_exports_progress_and_logs_each_step(  # type: ignore[no-untyped-def]
    settings, metrics, library_log
) -> None:
    ctx = build_context(settings, metrics=metrics)
    kinds = {k.name: k for k in (JobKind("t.stepped", stepped), JobKind("t.broken", broken))}
    worker = Worker(ctx, kinds=kinds)
    loop = asyncio.create_task(worker.run())
    ok, bad = add(settings, "t.stepped"), add(settings, "t.broken")
    cancelled = add(settings, "t.never")  # no worker runs this kind: cancelled while queued
    await asyncio.to_thread(ctx.queue.cancel, cancelled)
    try:
        for _ in range(100):
            if (await asyncio.to_thread(ctx.queue.get, ok)).status == "completed":
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
        await loop

    def transitions(kind: str, state: str) -> float | None:
        return metrics.value(JOB_TRANSITIONS, kind=kind, state=state)

    assert transitions("t.stepped", "processing") == 1
    assert transitions("t.stepped", "completed") == 1
    assert transitions("t.broken", "processing") == 1
    assert transitions("t.broken", "failed") == 1
    assert transitions("t.never", "cancelled") == 1
    assert transitions("t.never", "processing") is None
    # Heartbeats (every 0.2 s here) exported the progress; the end set it to 1.
    assert metrics.value(JOB_PROGRESS, job_id=ok, kind="t.stepped") == 1.0
    assert metrics.value(JOB_PROGRESS, job_id=bad, kind="t.broken") is None  # never reported
    lines = [
        r.getMessage() for r in library_log.records if f"job {ok} (t.stepped)" in r.getMessage()
    ]
    assert lines == [
        f"job {ok} (t.stepped) 0% epoch 1/4 [epoch=1 loss=1]",
        f"job {ok} (t.stepped) 25% epoch 2/4 [epoch=2 loss=0.5]",
        f"job {ok} (t.stepped) 50% epoch 3/4 [epoch=3 loss=0.3333]",
        f"job {ok} (t.stepped) 75% epoch 4/4 [epoch=4 loss=0.25]",
    ]


async def test_queue_gauges_per_kind(settings, metrics) -> None:  # type: ignore[no-untyped-def]
    ctx = build_context(settings, metrics=metrics)
    add(settings, "t.a")
    add(settings, "t.a")
    add(settings, "t.b")
    await asyncio.sleep(0.3)
    claimed = await asyncio.to_thread(ctx.queue.claim, "w1", ["t.b"])
    assert claimed is not None
    await export_queue_metrics(ctx)
    assert metrics.value(QUEUE_DEPTH, kind="t.a") == 2
    assert metrics.value(JOBS_PROCESSING, kind="t.a") == 0
    assert metrics.value(QUEUE_DEPTH, kind="t.b") == 0
    assert metrics.value(JOBS_PROCESSING, kind="t.b") == 1
    age = metrics.value(QUEUE_OLDEST_AGE, kind="t.a")
    assert age is not None and 0.3 <= age < 30
    assert metrics.value(QUEUE_OLDEST_AGE, kind="t.b") == 0
    # A drained queue reads 0, not its last depth.
    for job in list_jobs(settings.database_url, status="queued"):
        await asyncio.to_thread(ctx.queue.cancel, job.id)
    await export_queue_metrics(ctx)
    assert metrics.value(QUEUE_DEPTH, kind="t.a") == 0
    assert metrics.value(QUEUE_OLDEST_AGE, kind="t.a") == 0


async def test_webhook_deliveries_by_outcome(settings, receiver, metrics) -> None:  # type: ignore[no-untyped-def]
    receiver.script = [500]
    add_webhook(settings, receiver.url, event_id="ok-after-retry")
    add_webhook(settings, "http://10.0.0.1/hook", event_id="refused")  # private, not allowed
    policy = EgressPolicy(EgressSettings(allow=["127.0.0.1"]))
    deliverer = webhooks.Deliverer(
        settings.database_url, settings.webhooks, policy, worker_id="t", metrics=metrics
    )
    await drain(deliverer)
    assert metrics.value(WEBHOOK_DELIVERIES, outcome="retry") == 1
    assert metrics.value(WEBHOOK_DELIVERIES, outcome="delivered") == 1
    assert metrics.value(WEBHOOK_DELIVERIES, outcome="failed") == 1
