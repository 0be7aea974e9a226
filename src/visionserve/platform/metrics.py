"""Application metrics: one catalogue of names, and the sink the code records into.

The library never imports Ray: it records through a :class:`Metrics` sink found on the
:class:`~visionserve.platform.context.AppContext`. The deployments inject a sink backed
by ``ray.util.metrics`` (``deployments/metrics.py``), which Ray's Prometheus endpoint
exports with a ``ray_`` prefix (a counter also gets ``_total``); everywhere else (tests,
the CLI) records go to :class:`NoMetrics`, or to :class:`MemoryMetrics` to look at them.

Every metric is declared once in :data:`CATALOGUE`: its kind, tag keys and, for a
histogram, its buckets. A sink refuses a name or tag set the catalogue does not declare,
so the README table and the Grafana dashboard (tested against the catalogue) cannot
drift from what the code records. Tags hold bounded values only: a route is its
template (``/api/v1/task/{task_id}``), never the raw path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

Kind = Literal["counter", "gauge", "histogram"]

# Milliseconds, like Ray Serve's own latency histograms, from a cached answer to a training.
LATENCY_MS_BUCKETS = (
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0,
)  # fmt: skip


@dataclass(frozen=True)
class MetricSpec:
    """One application metric: what ``ray.util.metrics`` is given to create it."""

    name: str
    kind: Kind
    description: str
    tags: tuple[str, ...]
    buckets: tuple[float, ...] = ()

    @property
    def exported(self) -> str:
        """The series name on Ray's Prometheus endpoint (histograms add ``_bucket``...)."""
        return f"ray_{self.name}_total" if self.kind == "counter" else f"ray_{self.name}"


REQUESTS = "visionserve_requests"
REQUEST_LATENCY = "visionserve_request_latency_ms"
MODEL_LATENCY = "visionserve_model_latency_ms"
JOB_TRANSITIONS = "visionserve_job_transitions"
QUEUE_DEPTH = "visionserve_queue_depth"
QUEUE_OLDEST_AGE = "visionserve_queue_oldest_age_s"
JOBS_PROCESSING = "visionserve_jobs_processing"
JOB_PROGRESS = "visionserve_job_progress"
WEBHOOK_DELIVERIES = "visionserve_webhook_deliveries"

CATALOGUE: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            REQUESTS,
            "counter",
            "HTTP requests answered by the ingress, by surface, route template, method and "
            "status code.",
            ("surface", "route", "method", "status"),
        ),
        MetricSpec(
            REQUEST_LATENCY,
            "histogram",
            "Time from request to the end of the response, in ms, by surface and route.",
            ("surface", "route"),
            LATENCY_MS_BUCKETS,
        ),
        MetricSpec(
            MODEL_LATENCY,
            "histogram",
            "Time a model deployment spends on one call, in ms, by deployment, method and "
            "outcome (ok, error).",
            ("deployment", "method", "outcome"),
            LATENCY_MS_BUCKETS,
        ),
        MetricSpec(
            JOB_TRANSITIONS,
            "counter",
            "Durable jobs entering a state (processing: claimed by a worker, re-claims "
            "included; completed, failed, cancelled), by job kind.",
            ("kind", "state"),
        ),
        MetricSpec(
            QUEUE_DEPTH,
            "gauge",
            "Queued jobs (not yet claimed) by job kind, refreshed by every job worker.",
            ("kind",),
        ),
        MetricSpec(
            QUEUE_OLDEST_AGE,
            "gauge",
            "Age in seconds of the oldest queued job by kind (0 when none waits).",
            ("kind",),
        ),
        MetricSpec(
            JOBS_PROCESSING,
            "gauge",
            "Jobs held by a worker (processing) by job kind.",
            ("kind",),
        ),
        MetricSpec(
            JOB_PROGRESS,
            "gauge",
            "Progress 0..1 of a running job that reports it (training, batches), by job id "
            "and kind; set to its final value when the job ends.",
            ("job_id", "kind"),
        ),
        MetricSpec(
            WEBHOOK_DELIVERIES,
            "counter",
            "Webhook delivery attempts by outcome: delivered, retry (failed, tried again "
            "later), failed (given up).",
            ("outcome",),
        ),
    )
}


class Metrics(Protocol):
    """Where the code records; names and tags must be those of :data:`CATALOGUE`."""

    def inc(self, name: str, tags: Mapping[str, str], value: float = 1.0) -> None:
        """Add ``value`` to the counter ``name``."""
        ...

    def set(self, name: str, value: float, tags: Mapping[str, str]) -> None:
        """Set the gauge ``name``."""
        ...

    def observe(self, name: str, value: float, tags: Mapping[str, str]) -> None:
        """Record one observation of the histogram ``name``."""
        ...


def spec_for(name: str, kind: Kind, tags: Mapping[str, str]) -> MetricSpec:
    """The catalogue entry of ``name``; a wrong name, kind or tag set is a bug: raise."""
    spec = CATALOGUE.get(name)
    if spec is None:
        raise KeyError(f"metric {name!r} is not in the catalogue")
    if spec.kind != kind:
        raise TypeError(f"metric {name!r} is a {spec.kind}, not a {kind}")
    if set(tags) != set(spec.tags):
        raise ValueError(f"metric {name!r} takes tags {spec.tags}, got {tuple(tags)}")
    return spec


class NoMetrics:
    """Records nothing (tests, the CLI, a library user without Ray)."""

    def inc(self, name: str, tags: Mapping[str, str], value: float = 1.0) -> None:
        pass

    def set(self, name: str, value: float, tags: Mapping[str, str]) -> None:
        pass

    def observe(self, name: str, value: float, tags: Mapping[str, str]) -> None:
        pass


TagKey = tuple[tuple[str, str], ...]


def _key(tags: Mapping[str, str]) -> TagKey:
    return tuple(sorted(tags.items()))


class MemoryMetrics:
    """Keeps what is recorded, checked against the catalogue (for tests and debugging)."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[TagKey, float]] = defaultdict(dict)
        self.gauges: dict[str, dict[TagKey, float]] = defaultdict(dict)
        self.observations: dict[str, dict[TagKey, list[float]]] = defaultdict(dict)

    def inc(self, name: str, tags: Mapping[str, str], value: float = 1.0) -> None:
        spec_for(name, "counter", tags)
        series = self.counters[name]
        series[_key(tags)] = series.get(_key(tags), 0.0) + value

    def set(self, name: str, value: float, tags: Mapping[str, str]) -> None:
        spec_for(name, "gauge", tags)
        self.gauges[name][_key(tags)] = value

    def observe(self, name: str, value: float, tags: Mapping[str, str]) -> None:
        spec_for(name, "histogram", tags)
        self.observations[name].setdefault(_key(tags), []).append(value)

    def value(self, name: str, **tags: str) -> float | None:
        """A counter's total or a gauge's value for exactly ``tags`` (None: never recorded)."""
        series = self.counters.get(name) or self.gauges.get(name) or {}
        return series.get(_key(tags))

    def count(self, name: str, **tags: str) -> int:
        """How many observations a histogram has for exactly ``tags``."""
        return len(self.observations.get(name, {}).get(_key(tags), []))
