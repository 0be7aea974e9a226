"""What every deployment shares: options, health checks and cluster probes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

_STATUS_TTL_S = 2.0
# Health checks every deployment shares (a replica that stops answering is replaced).
#: For ``memory`` in ``ray_actor_options`` (bytes).
GiB = 1024**3

HEALTH = {"health_check_period_s": 10, "health_check_timeout_s": 30}


def autoscaling(target_ongoing_requests: float, max_replicas: int = 2) -> dict[str, Any]:
    """One replica at start, scaling up to ``max_replicas`` on ongoing requests."""
    return {
        "min_replicas": 1,
        "initial_replicas": 1,
        "max_replicas": max_replicas,
        "target_ongoing_requests": target_ongoing_requests,
    }


def builder_runtime(args: dict[str, Any]) -> dict[str, Any]:
    """``AppContext.runtime`` entries for what the app builder resolved (``catalogues``).

    Requests then answer from these instead of asking the deployments each time.
    """
    from visionserve.surfaces.cutout.service import CATALOGUE, CutoutCatalogue

    runtime: dict[str, Any] = {}
    catalogues = args.get("catalogues") or {}
    if "cutout" in catalogues:
        runtime[CATALOGUE] = CutoutCatalogue.model_validate(catalogues["cutout"])
    return runtime


_cache: tuple[float, dict[str, str]] = (0.0, {})


async def serve_deployment_status() -> dict[str, str]:
    """Deployment name -> Serve status across applications, cached for two seconds."""
    global _cache
    stamp, statuses = _cache
    if time.monotonic() - stamp < _STATUS_TTL_S:
        return statuses
    from ray import serve

    status = await asyncio.to_thread(serve.status)
    statuses = {
        name: str(getattr(d.status, "value", d.status))
        for app in status.applications.values()
        for name, d in app.deployments.items()
    }
    _cache = (time.monotonic(), statuses)
    return statuses


async def ray_cluster_resources() -> dict[str, float]:
    """Total resources of the Ray cluster (CPU, GPU, memory, custom)."""
    import ray

    if not ray.is_initialized():
        return {}
    return {k: float(v) for k, v in (await asyncio.to_thread(ray.cluster_resources)).items()}
