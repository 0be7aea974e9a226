"""What every deployment shares: logging and the cluster status snapshot."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from visionserve.api.middleware import RequestIdLogFilter

_STATUS_TTL_S = 2.0
# Health checks every deployment shares (a replica that stops answering is replaced).
HEALTH = {"health_check_period_s": 10, "health_check_timeout_s": 30}


def autoscaling(target_ongoing_requests: float, max_replicas: int = 2) -> dict[str, Any]:
    """One replica at start, scaling up to ``max_replicas`` on ongoing requests."""
    return {
        "min_replicas": 1,
        "initial_replicas": 1,
        "max_replicas": max_replicas,
        "target_ongoing_requests": target_ongoing_requests,
    }


_cache: tuple[float, dict[str, str]] = (0.0, {})


def configure_logging() -> None:
    root = logging.getLogger("visionserve")
    if not any(isinstance(f, RequestIdLogFilter) for f in root.filters):
        root.addFilter(RequestIdLogFilter())
    root.setLevel(logging.INFO)


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
