"""Everything a request handler or a job handler may use: one typed context.

The ingress and the job worker each build one per replica with :func:`build_context`.
Ray-side objects (live pipeline hosts, training launchers, cluster probes) are built
by the deployments and injected here, so the library never imports Ray.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from visionserve.errors import ServiceUnavailable
from visionserve.platform.egress import EgressPolicy
from visionserve.platform.job_metrics import terminal_hook
from visionserve.platform.metrics import Metrics, NoMetrics
from visionserve.settings import Settings
from visionserve.store.blobs import BlobStore, make_blob_store
from visionserve.store.db import engine_for
from visionserve.store.idempotency import IdempotencyStore, make_idempotency_store
from visionserve.store.keys import KeyStore
from visionserve.store.queue import JobQueue
from visionserve.store.ratelimit import (
    ConcurrencyLimiter,
    RateLimiter,
    make_concurrency_limiter,
    make_rate_limiter,
)

ClusterStatus = Callable[[], Awaitable[dict[str, str]]]
ClusterReplicas = Callable[[], Awaitable[dict[str, dict[str, Any]]]]
ClusterResources = Callable[[], Awaitable[dict[str, float]]]


async def _no_cluster_status() -> dict[str, str]:
    return {}


async def _no_cluster_resources() -> dict[str, float]:
    return {}


async def _no_cluster_replicas() -> dict[str, dict[str, Any]]:
    return {}


@dataclass
class AppContext:
    settings: Settings
    keys: KeyStore
    queue: JobQueue
    blobs: BlobStore
    egress: EgressPolicy
    rate_limiter: RateLimiter
    concurrency: ConcurrencyLimiter
    idempotency: IdempotencyStore
    # Serve DeploymentHandles by deployment name; tests put in-process fakes here.
    handles: Mapping[str, Any] = field(default_factory=dict)
    # Deployment name -> Serve status (HEALTHY, UPDATING, UNHEALTHY, ...).
    cluster_status: ClusterStatus = _no_cluster_status
    # Deployment name -> {"replicas": {"RUNNING": 2, "STARTING": 1}, "message": why not healthy}.
    cluster_replicas: ClusterReplicas = _no_cluster_replicas
    # Total cluster resources as Ray reports them ({"CPU": 2.0, "GPU": 1.0, ...}).
    cluster_resources: ClusterResources = _no_cluster_resources
    # Ray-side objects by name ("inspect.pipelines", "inspect.training"), built by the
    # deployments, and what the app builder resolved ("cutout.catalogue"); a surface
    # reads its own through a typed accessor.
    runtime: Mapping[str, Any] = field(default_factory=dict)
    # Application metrics (the deployments inject Ray's; see platform/metrics.py).
    metrics: Metrics = field(default_factory=NoMetrics)

    def runtime_object(self, name: str, what: str) -> Any:
        """The injected Ray-side object ``name``, or a 503 naming ``what`` is missing."""
        found = self.runtime.get(name)
        if found is None:
            raise ServiceUnavailable(f"{what} needs the Ray cluster; it is not available here")
        return found


def build_context(
    settings: Settings,
    *,
    handles: Mapping[str, Any] | None = None,
    cluster_status: ClusterStatus | None = None,
    cluster_replicas: ClusterReplicas | None = None,
    cluster_resources: ClusterResources | None = None,
    runtime: Mapping[str, Any] | None = None,
    metrics: Metrics | None = None,
) -> AppContext:
    """Wire the services from settings; migrates the database on first use."""
    engine_for(settings.database_url)
    metrics = metrics or NoMetrics()
    return AppContext(
        settings=settings,
        keys=KeyStore(settings.database_url),
        queue=JobQueue(settings.database_url, settings.jobs, on_terminal=terminal_hook(metrics)),
        blobs=make_blob_store(settings),
        egress=EgressPolicy(settings.egress),
        rate_limiter=make_rate_limiter(settings),
        concurrency=make_concurrency_limiter(settings),
        idempotency=make_idempotency_store(settings),
        handles=handles or {},
        cluster_status=cluster_status or _no_cluster_status,
        cluster_replicas=cluster_replicas or _no_cluster_replicas,
        cluster_resources=cluster_resources or _no_cluster_resources,
        runtime=runtime or {},
        metrics=metrics,
    )
