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


_cache: tuple[float, dict[str, Any]] = (0.0, {})


async def _serve_deployments() -> dict[str, Any]:
    """Deployment name -> Serve's status overview across applications, cached for 2 s."""
    global _cache
    stamp, deployments = _cache
    if time.monotonic() - stamp < _STATUS_TTL_S:
        return deployments
    from ray import serve

    status = await asyncio.to_thread(serve.status)
    deployments = {
        name: d for app in status.applications.values() for name, d in app.deployments.items()
    }
    _cache = (time.monotonic(), deployments)
    return deployments


async def serve_deployment_status() -> dict[str, str]:
    """Deployment name -> Serve status (HEALTHY, UPSCALING, UNHEALTHY, ...)."""
    return {
        name: str(getattr(d.status, "value", d.status))
        for name, d in (await _serve_deployments()).items()
    }


async def serve_replica_states() -> dict[str, dict[str, Any]]:
    """Deployment name -> its replicas by state and, when it is not healthy, Serve's why."""
    out: dict[str, dict[str, Any]] = {}
    for name, d in (await _serve_deployments()).items():
        states = {str(getattr(k, "value", k)): n for k, n in (d.replica_states or {}).items()}
        out[name] = {"replicas": states}
        if d.message:
            out[name]["message"] = d.message
    return out


async def ray_cluster_resources() -> dict[str, float]:
    """Total resources of the Ray cluster (CPU, GPU, memory, custom)."""
    import ray

    if not ray.is_initialized():
        return {}
    return {k: float(v) for k, v in (await asyncio.to_thread(ray.cluster_resources)).items()}
