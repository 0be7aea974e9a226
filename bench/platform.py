"""Platform overhead: Serve ingress vs plain uvicorn, and jobs accepted per second.

Run as ``python -m bench.platform`` (``make bench``).

Runs both servers on this machine in one run and prints ratios, so the figures
compare like with like:
- median / p99 latency of a no-op request (GET /edit/health through the full
  middleware stack) through Ray Serve's proxy + ingress replica vs the very same
  FastAPI app under plain uvicorn;
- jobs accepted per second (POST -> 202, a committed row each) on SQLite through
  Serve, with 8 concurrent clients.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench._util import free_port, record, summary

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
REPO = Path(__file__).resolve().parents[1]
N_LATENCY = 400
N_JOBS = 400
CONCURRENCY = 8

UVICORN_APP = """
from visionserve.api.app import create_app
from visionserve.platform.context import build_context
from visionserve.surfaces import NAMES, load_surface
from visionserve.settings import Settings
import os
settings = Settings(home=os.environ["BENCH_HOME"])
app = create_app(build_context(settings), [load_surface(n) for n in NAMES])
"""


def latency(base: str, path: str) -> dict[str, float]:
    with httpx.Client(base_url=base, timeout=30) as c:
        for _ in range(30):  # warm up
            c.get(path).raise_for_status()
        samples = []
        for _ in range(N_LATENCY):
            t = time.perf_counter()
            c.get(path).raise_for_status()
            samples.append((time.perf_counter() - t) * 1000)
    return summary(samples)


async def accept_jobs(base: str, key: str, trace: str) -> float:
    headers = {"Authorization": f"Bearer {key}"}
    body = {"trace": trace, "steps": 1, "step_s": 0}
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as c:
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            async with sem:
                r = await c.post("/sample/jobs", json=body)
                assert r.status_code == 202, r.text

        await asyncio.gather(*(one() for _ in range(20)))  # warm up
        t = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(N_JOBS)))
        return N_JOBS / (time.perf_counter() - t)


def main() -> None:
    import ray
    from ray import serve

    from graphs.app import build_app
    from visionserve.settings import get_settings
    from visionserve.store.keys import KeyStore

    home = Path(tempfile.mkdtemp(prefix="vs-bench-"))
    database_url = f"sqlite:///{home / 'visionserve.db'}"
    serve_port, uvicorn_port = free_port(), free_port()

    env = {**os.environ, "BENCH_HOME": str(home / "uvicorn"), "PYTHONPATH": str(REPO)}
    app_file = home / "uvicorn_app.py"
    app_file.write_text(UVICORN_APP)
    uvicorn = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "uvicorn_app:app",
            "--port",
            str(uvicorn_port),
            "--log-level",
            "warning",
            "--app-dir",
            str(home),
        ],
        env=env,
    )
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
    serve.run(
        build_app(
            {
                "settings": {
                    "home": str(home),
                    "database_url": database_url,
                    "model_home": str(get_settings().model_home),  # edit's models start
                },
                "surfaces": ["edit"],  # for its no-op route, GET /edit/health
                "job_modules": ["tests.sample_jobs"],
                "extra_surfaces": ["tests.sample_jobs:SURFACE"],
            }
        ),
        name="visionserve",
        route_prefix="/",
    )
    try:
        serve_base = f"http://127.0.0.1:{serve_port}"
        uvicorn_base = f"http://127.0.0.1:{uvicorn_port}"
        for _ in range(100):
            try:
                httpx.get(f"{uvicorn_base}/health", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        key, _ = KeyStore(database_url).create("bench", rate_limit_per_minute=1_000_000)
        plain = latency(uvicorn_base, "/edit/health")
        served = latency(serve_base, "/edit/health")
        jobs_per_s = asyncio.run(accept_jobs(serve_base, key, str(home / "trace")))
    finally:
        uvicorn.terminate()
        serve.shutdown()
        ray.shutdown()

    print(f"no-op GET /edit/health, {N_LATENCY} sequential requests (ms)")
    print(f"  {'':<22}{'median':>10}{'p99':>10}")
    print(f"  {'plain uvicorn':<22}{plain['median']:>10.2f}{plain['p99']:>10.2f}")
    print(f"  {'Serve ingress':<22}{served['median']:>10.2f}{served['p99']:>10.2f}")
    print(
        f"  {'ratio Serve/uvicorn':<22}{served['median'] / plain['median']:>10.2f}"
        f"{served['p99'] / plain['p99']:>10.2f}"
    )
    print(f"jobs accepted (POST -> 202, SQLite, {CONCURRENCY} clients): {jobs_per_s:.0f}/s")
    record("no-op median, Serve vs uvicorn", served["median"], "ms", baseline=plain["median"])
    record("no-op p99, Serve vs uvicorn", served["p99"], "ms", baseline=plain["p99"])
    record(
        "no-op median added by Serve",
        served["median"] - plain["median"],
        "ms",
        goal="<= 3",
        goal_on="value",
    )
    record(
        "no-op p99 added by Serve", served["p99"] - plain["p99"], "ms", goal="<= 5", goal_on="value"
    )
    record("jobs accepted, SQLite", jobs_per_s, "jobs/s", goal=">= 250", goal_on="value")


if __name__ == "__main__":
    main()
