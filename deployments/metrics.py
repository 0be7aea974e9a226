"""Application metrics on Ray: the catalogue's metrics as ``ray.util.metrics`` objects.

Ray's metrics agent exports them on each node's Prometheus endpoint with a ``ray_``
prefix (``visionserve_requests`` becomes ``ray_visionserve_requests_total``). The
library records through :class:`RayMetrics`, injected into its ``AppContext``; model
deployments time their methods with :func:`measured`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from ray.util import metrics as ray_metrics

from visionserve.platform.metrics import MODEL_LATENCY, Kind, spec_for

P = ParamSpec("P")
R = TypeVar("R")

_created: dict[str, Any] = {}
_lock = threading.Lock()


def _metric(name: str, kind: Kind, tags: Mapping[str, str]) -> Any:
    """The process's one Ray metric object for ``name`` (created on first use)."""
    spec = spec_for(name, kind, tags)
    found = _created.get(name)
    if found is not None:
        return found
    with _lock:
        if name not in _created:
            if spec.kind == "counter":
                made: Any = ray_metrics.Counter(name, spec.description, spec.tags)
            elif spec.kind == "gauge":
                made = ray_metrics.Gauge(name, spec.description, spec.tags)
            else:
                made = ray_metrics.Histogram(name, spec.description, list(spec.buckets), spec.tags)
            _created[name] = made
        return _created[name]


class RayMetrics:
    """The :class:`~visionserve.platform.metrics.Metrics` sink of a Ray process."""

    def inc(self, name: str, tags: Mapping[str, str], value: float = 1.0) -> None:
        if value > 0:  # Ray refuses a zero increment
            _metric(name, "counter", tags).inc(value, tags=dict(tags))

    def set(self, name: str, value: float, tags: Mapping[str, str]) -> None:
        _metric(name, "gauge", tags).set(value, tags=dict(tags))

    def observe(self, name: str, value: float, tags: Mapping[str, str]) -> None:
        _metric(name, "histogram", tags).observe(value, tags=dict(tags))


METRICS = RayMetrics()


def _deployment_name(replica: object) -> str:
    try:
        from ray import serve

        return str(serve.get_replica_context().deployment)
    except Exception:  # not in a Serve replica (a test built the class by hand)
        return type(replica).__name__


def measured(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Time an async deployment method into ``visionserve_model_latency_ms``.

    Tagged with the deployment's Serve name (``bg-u2netp``, ``ocr``), the method and
    its outcome (``ok``, ``error``).
    """

    @functools.wraps(method)
    async def timed(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await method(*args, **kwargs)
            outcome = "ok"
            return result
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            tags = {
                "deployment": _deployment_name(args[0]),
                "method": method.__name__,
                "outcome": outcome,
            }
            METRICS.observe(MODEL_LATENCY, elapsed_ms, tags)

    return timed
