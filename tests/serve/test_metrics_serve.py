"""Application metrics on a real local Ray Serve, read from Ray's Prometheus endpoint.

Real requests and jobs go through the cluster; the test then scrapes the endpoint a
Prometheus server would scrape and finds every ``visionserve_*`` metric there, moved by
what it did (deltas: other tests of the session record into the same counters).
"""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Callable

import httpx
import pytest
from PIL import Image

from visionserve.platform.metrics import CATALOGUE
from visionserve.store.keys import KeyStore

pytestmark = [pytest.mark.ray, pytest.mark.slow]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = list[tuple[str, dict[str, str], float]]


def scrape(url: str) -> Samples:
    found: Samples = []
    for line in httpx.get(url, timeout=10).text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            name, labels, value = match.groups()
            found.append((name, dict(_LABEL.findall(labels or "")), float(value)))
    return found


def pick(samples: Samples, name: str, **labels: str) -> list[float]:
    """Values of ``name`` whose labels include ``labels`` (one per Ray worker process)."""
    return [
        v
        for n, have, v in samples
        if n == name and all(have.get(k) == want for k, want in labels.items())
    ]


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(pick(samples, name, **labels))


def top(samples: Samples, name: str, **labels: str) -> float:
    """A cluster-wide gauge every job worker exports: the dashboard's ``max``."""
    return max(pick(samples, name, **labels), default=0.0)


def png(size: tuple[int, int] = (32, 24)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def wait_until(url: str, check: Callable[[Samples], bool], what: str, timeout: float) -> Samples:
    deadline = time.time() + timeout
    while True:
        samples = scrape(url)
        if check(samples):
            return samples
        assert time.time() < deadline, f"never seen on the metrics endpoint: {what}"
        time.sleep(0.5)


def test_metrics_move_after_real_requests_and_jobs(  # type: ignore[no-untyped-def]
    serve_cluster, ray_metrics_url, receiver, tmp_path
) -> None:
    base = serve_cluster.base_url
    requests = "ray_visionserve_requests_total"
    transitions = "ray_visionserve_job_transitions_total"
    kind = "sample.sleep"
    before = scrape(ray_metrics_url)
    key, _ = KeyStore(serve_cluster.database_url).create("metrics-test")
    auth = {"Authorization": f"Bearer {key}"}

    # Requests of three surfaces and outcomes; one real model call (Lanczos upscale).
    for _ in range(2):
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
    assert httpx.get(f"{base}/cutout/jobs/nope", timeout=10).status_code == 404
    assert httpx.get(f"{base}/no/such/route", timeout=10).status_code == 404
    up = httpx.post(
        f"{base}/cutout/upscale",
        json={"image": png(), "scale_factor": 2, "method": "lanczos"},
        timeout=60,
    )
    assert up.status_code == 200, up.text

    # Five 6-second jobs on a worker that runs two at a time: a queue that drains in ~18 s,
    # long enough for the 5-second queue refresh and the 0.5-second heartbeats to see it.
    # The sample surface allows 5 requests a minute per key: a sixth is a 429.
    jobs = []
    for i in range(5):
        body = {"trace": str(tmp_path / f"trace{i}"), "steps": 12, "step_s": 0.5}
        if i == 0:
            body["webhook_url"] = receiver.url
        r = httpx.post(f"{base}/sample/jobs", json=body, headers=auth, timeout=10)
        assert r.status_code == 202, r.text
        jobs.append(r.json()["job_id"])
    limited = httpx.post(f"{base}/sample/jobs", json=body, headers=auth, timeout=10)
    assert limited.status_code == 429

    peak = {"depth": 0.0, "age": 0.0, "processing": 0.0}
    partial: set[str] = set()

    def jobs_done(samples: Samples) -> bool:
        peak["depth"] = max(peak["depth"], top(samples, "ray_visionserve_queue_depth", kind=kind))
        peak["age"] = max(
            peak["age"], top(samples, "ray_visionserve_queue_oldest_age_s", kind=kind)
        )
        peak["processing"] = max(
            peak["processing"], top(samples, "ray_visionserve_jobs_processing", kind=kind)
        )
        for job_id in jobs:
            if any(0 < v < 1 for v in pick(samples, "ray_visionserve_job_progress", job_id=job_id)):
                partial.add(job_id)
        moved = total(samples, transitions, kind=kind, state="completed") - total(
            before, transitions, kind=kind, state="completed"
        )
        return moved >= len(jobs)

    samples = wait_until(ray_metrics_url, jobs_done, "five completed sample jobs", timeout=120)

    def delta(name: str, **labels: str) -> float:
        return total(samples, name, **labels) - total(before, name, **labels)

    assert delta(requests, surface="platform", route="/health", method="GET", status="200") >= 2
    assert delta(requests, surface="cutout", route="/cutout/jobs/{job_id}", status="404") >= 1
    assert delta(requests, surface="platform", route="unmatched", status="404") >= 1
    assert delta(requests, surface="sample", route="/sample/jobs", method="POST", status="202") == 5
    assert delta(requests, surface="sample", route="/sample/jobs", method="POST", status="429") == 1
    assert (
        delta("ray_visionserve_request_latency_ms_count", surface="cutout", route="/cutout/upscale")
        >= 1
    )
    assert (
        delta("ray_visionserve_request_latency_ms_bucket", route="/cutout/upscale", le="+Inf") >= 1
    )
    assert (
        delta(
            "ray_visionserve_model_latency_ms_count",
            deployment="upscale",
            method="upscale",
            outcome="ok",
        )
        >= 1
    )
    assert delta(transitions, kind=kind, state="processing") >= len(jobs)
    # The queue was seen waiting and working, and the jobs' progress moving through (0, 1).
    assert peak["depth"] >= 1 and peak["age"] > 0 and peak["processing"] >= 1, peak
    assert partial, "no job's progress gauge was seen between 0 and 1"

    # Then the queue drains back to 0, every finished job's progress reads 1, and the
    # webhook of the first job is counted as delivered.
    def settled(now: Samples) -> bool:
        finished = all(
            max(pick(now, "ray_visionserve_job_progress", job_id=j), default=1.0) == 1.0
            for j in jobs
        )
        delivered = total(now, "ray_visionserve_webhook_deliveries_total", outcome="delivered")
        return (
            top(now, "ray_visionserve_queue_depth", kind=kind) == 0
            and finished
            and delivered
            > total(before, "ray_visionserve_webhook_deliveries_total", outcome="delivered")
        )

    final = wait_until(ray_metrics_url, settled, "a drained queue and a delivered webhook", 30)
    exported = {name for name, _, _ in final}
    for spec in CATALOGUE.values():
        series = spec.exported + ("_count" if spec.kind == "histogram" else "")
        assert series in exported, f"{series} is not on the metrics endpoint"
