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

# CPU reservations (``ray_actor_options.num_cpus``): what Ray packs replicas by. On one
# machine every deployment's minimum replica shares the same cores and most sit idle,
# so a reservation is a share, not a core held. A deployment that only awaits others
# (ingress, graphs, job worker) reserves IO_CPUS: its requests cost it milliseconds. A
# model replica reserves MODEL_CPUS_PER_THREAD per inference thread (``threads`` in its
# user_config; raise num_cpus with it). With these the minimum replicas of the whole
# app take about 1.5 of 2 CPUs, leaving room for busy models to add replicas
# (tests/unit/cli/test_serve_config.py checks the sum). A cluster gives each model
# replica a core (cluster/profiles.py); `make run` takes RAY_NUM_CPUS logical CPUs.
IO_CPUS = 0.01
MODEL_CPUS_PER_THREAD = 0.15


def model_cpus(threads: int = 1) -> float:
    """The CPU reservation of a model replica running ``threads`` inference threads."""
    return round(MODEL_CPUS_PER_THREAD * threads, 2)


def autoscaling(target_ongoing_requests: float, max_replicas: int = 2) -> dict[str, Any]:
    """One replica at start, scaling up to ``max_replicas`` on ongoing requests.

    Serve waits 30 s of sustained load before adding a replica and 10 min of quiet
    before removing one; on one machine an idle extra replica holds a model's memory,
    so it goes after a minute, and load is answered after 15 s.
    """
    return {
        "min_replicas": 1,
        "initial_replicas": 1,
        "max_replicas": max_replicas,
        "target_ongoing_requests": target_ongoing_requests,
        "upscale_delay_s": 15.0,
        "downscale_delay_s": 60.0,
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
