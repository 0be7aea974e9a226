"""Everything a request handler may use, built once per ingress replica."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from visionserve.egress import EgressPolicy
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
from visionserve.worker import terminal_webhook

ClusterStatus = Callable[[], Awaitable[dict[str, str]]]


async def _no_cluster() -> dict[str, str]:
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
    cluster_status: ClusterStatus = _no_cluster

    @property
    def database_url(self) -> str:
        return str(self.settings.database_url)


def build_context(
    settings: Settings,
    *,
    handles: Mapping[str, Any] | None = None,
    cluster_status: ClusterStatus | None = None,
) -> AppContext:
    """Wire the services from settings; migrates the database on first use."""
    database_url = str(settings.database_url)
    engine_for(database_url)
    return AppContext(
        settings=settings,
        keys=KeyStore(database_url),
        queue=JobQueue(database_url, settings.jobs, on_terminal=terminal_webhook),
        blobs=make_blob_store(settings),
        egress=EgressPolicy(settings.egress),
        rate_limiter=make_rate_limiter(settings),
        concurrency=make_concurrency_limiter(settings),
        idempotency=make_idempotency_store(settings),
        handles=handles or {},
        cluster_status=cluster_status or _no_cluster,
    )
