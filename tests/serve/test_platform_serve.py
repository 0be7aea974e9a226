"""The platform on a real local Ray Serve: ingress, durable jobs, webhooks, body limits."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from visionserve.platform import webhooks
from visionserve.settings import JobSettings
from visionserve.store.queue import JobQueue

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no RSS for {pid}")


def pids_matching(fragment: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if fragment in cmd:
                found.append(int(entry.name))
    return found


def test_health_lists_deployments_and_docs(serve_cluster) -> None:  # type: ignore[no-untyped-def]
    # "ok" once no deployment is resizing: earlier tests' load may still be scaling one.
    deadline = time.monotonic() + 180
    while True:
        r = httpx.get(f"{serve_cluster.base_url}/health", timeout=10)
        body = r.json()
        if body["status"] == "ok" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert body["status"] == "ok", body
    assert body["deployments"]["ingress"] == "HEALTHY"
    assert body["deployments"]["job-worker"] == "HEALTHY"
    assert len(r.headers["X-Request-ID"]) == 36  # one id, set by Serve's proxy
    ready = httpx.get(
        f"{serve_cluster.base_url}/ready", headers={"X-Request-ID": "client-id-1"}, timeout=10
    )
    assert ready.headers["X-Request-ID"] == "client-id-1"
    assert ready.status_code == 200 and ready.json()["ready"] is True
    docs = httpx.get(f"{serve_cluster.base_url}/cutout/docs", timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = httpx.get(f"{serve_cluster.base_url}/inspect/api/openapi.json", timeout=10)
    assert spec.json()["info"]["title"] == "VisionServe inspect"


def test_job_survives_a_killed_worker(serve_cluster, receiver, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from visionserve.store.keys import KeyStore

    key, _ = KeyStore(serve_cluster.database_url).create("serve-test")
    trace = tmp_path / "trace"
    r = httpx.post(
        f"{serve_cluster.base_url}/sample/jobs",
        json={
            "trace": str(trace),
            "steps": 20,
            "step_s": 0.25,
            "webhook_url": receiver.url,
            "webhook_secret": "whsec",
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    deadline = time.time() + 30
    while not (trace.exists() and "start" in trace.read_text()):
        assert time.time() < deadline, "the worker never started the job"
        time.sleep(0.1)
    status = serve_cluster.handle("job-worker").status.remote().result(timeout_s=10)
    assert job_id in status["running"]
    os.kill(status["pid"], signal.SIGKILL)

    queue = JobQueue(serve_cluster.database_url, JobSettings())
    deadline = time.time() + 90
    while (job := queue.get(job_id)).status != "completed":
        assert job.status in {"queued", "processing"}, job.error
        assert time.time() < deadline, f"job stuck in {job.status}"
        time.sleep(0.25)
    lines = trace.read_text().split("\n")
    assert sum(line.startswith("start") for line in lines) == 2
    assert sum(line.startswith("done") for line in lines) == 1
    assert job.attempts == 2 and job.result["attempt"] == 2
    assert job.result["pid"] != status["pid"]

    got = receiver.wait_for(1, timeout=20)
    time.sleep(1.5)  # a duplicate delivery, if any, would arrive now
    events = {r.headers["X-VisionServe-Event-Id"] for r in receiver.requests}
    assert events == {f"job.completed:{job_id}"}
    assert webhooks.verify("whsec", got[0].headers["X-VisionServe-Signature"], got[0].body)


def test_60mb_body_is_refused_without_buffering(serve_cluster) -> None:  # type: ignore[no-untyped-def]
    pids = pids_matching("ServeReplica:visionserve:ingress") + pids_matching("ProxyActor")
    assert len(pids) >= 2, pids
    size = 60 * 1024 * 1024

    def body():  # streamed, so the client does not hold 60 MB either
        chunk = b"\0" * (1 << 20)
        for _ in range(60):
            yield chunk

    def send() -> httpx.Response:
        return httpx.post(
            f"{serve_cluster.base_url}/cutout/remove-background",
            content=body(),
            headers={"Content-Length": str(size), "Content-Type": "application/json"},
            timeout=30,
        )

    # The first refusal pays what any first request of a route does (imports, the
    # metrics series of its route and status); the body's cost is what the next adds.
    assert send().status_code == 413
    before = {pid: rss_kb(pid) for pid in pids}
    r = send()
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "image_too_large"
    growth_mb = {pid: (rss_kb(pid) - before[pid]) / 1024 for pid in pids}
    assert all(g < 20 for g in growth_mb.values()), growth_mb


def test_a_response_over_grpcs_4_mib_passes_the_proxy(serve_cluster) -> None:  # type: ignore[no-untyped-def]
    """cluster/ray.env: the proxy reaches the replicas over gRPC, whose messages Ray caps at
    4 MiB unless told otherwise; a cut-out's PNG is often larger."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    assert os.environ["RAY_SERVE_PROXY_USE_GRPC"] == "1"  # as `make run` starts Ray
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 4), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    r = httpx.post(
        f"{serve_cluster.base_url}/cutout/upscale",
        json={"image": base64.b64encode(buf.getvalue()).decode(), "scale_factor": 2},
        timeout=120,
    )
    assert r.status_code == 200, r.text[:300]
    assert len(r.content) > 6 * 1024 * 1024
    out = Image.open(io.BytesIO(base64.b64decode(r.json()["image_base64"])))
    assert out.size == (1400, 1400)
