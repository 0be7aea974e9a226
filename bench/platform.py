"""Platform overhead: Serve ingress vs plain uvicorn, and jobs accepted per second.

Run as ``python -m bench.platform`` (``make bench``).

Runs both servers on this machine in one run and prints ratios, so the figures
compare like with like:
- median / p99 latency of a no-op request (GET /edit/health through the full
  middleware stack) through Ray Serve's proxy + ingress replica vs the very same
  FastAPI app under plain uvicorn (goal: Serve adds <= 3 ms median, <= 5 ms p99);
- jobs accepted per second (POST -> 202, a committed row each, 8 concurrent clients)
  through Serve on SQLite (goal >= 250/s) and on PostgreSQL (goal >= 500/s; the
  server of ``VISIONSERVE_TEST_POSTGRES_URL``, a fresh schema), each beside the same
  app under plain uvicorn on the same database.

The Ray Serve request-path switches in effect (``RAY_SERVE_*`` in the environment,
as ``make run`` exports them) are printed with the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench._util import REPO, free_port, record, summary

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
N_LATENCY = 400
N_JOBS = 400
CONCURRENCY = 8
POSTGRES = os.environ.get(
    "VISIONSERVE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

UVICORN_APP = """
from visionserve.api.app import create_app
from visionserve.platform.context import build_context
from visionserve.surfaces import NAMES, load_surface
from visionserve.settings import Settings
from tests import sample_jobs
import os
settings = Settings(home=os.environ["BENCH_HOME"], database_url=os.environ["BENCH_DATABASE_URL"])
app = create_app(
    build_context(settings), [*(load_surface(n) for n in NAMES), sample_jobs.SURFACE]
)
"""


def latency(bases: dict[str, str], path: str) -> dict[str, dict[str, float]]:
    """Median and p99 (ms) of sequential GETs, the servers taking turns request by request
    (so that load from elsewhere on a shared machine falls on both alike)."""
    clients = {name: httpx.Client(base_url=base, timeout=30) for name, base in bases.items()}
    samples: dict[str, list[float]] = {name: [] for name in bases}
    try:
        for i in range(30 + N_LATENCY):
            for name, c in clients.items():
                t = time.perf_counter()
                c.get(path).raise_for_status()
                if i >= 30:  # the first 30 warm up
                    samples[name].append((time.perf_counter() - t) * 1000)
    finally:
        for c in clients.values():
            c.close()
    return {name: summary(s) for name, s in samples.items()}


async def accept_jobs(base: str, key: str, trace: str) -> float:
    headers = {"Authorization": f"Bearer {key}"}
    body = {"trace": trace, "steps": 1, "step_s": 0}
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers, limits=limits) as c:
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            async with sem:
                r = await c.post("/sample/jobs", json=body)
                assert r.status_code == 202, r.text

        await asyncio.gather(*(one() for _ in range(40)))  # warm up
        t = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(N_JOBS)))
        return N_JOBS / (time.perf_counter() - t)


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema on the PostgreSQL server, dropped afterwards."""
    import sqlalchemy as sa

    schema = f"vs_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(POSTGRES)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in POSTGRES else "?"
    try:
        yield f"{POSTGRES}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@contextlib.contextmanager
def uvicorn(home: Path, database_url: str) -> Iterator[str]:
    """The same FastAPI app under plain uvicorn, one process."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    (home / "uvicorn_app.py").write_text(UVICORN_APP)
    env = {
        **os.environ,
        "BENCH_HOME": str(home),
        "BENCH_DATABASE_URL": database_url,
        "PYTHONPATH": str(REPO),
    }
    args = ["--port", str(port), "--log-level", "warning", "--app-dir", str(home)]
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "uvicorn_app:app", *args], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base}/health", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def serve_app(home: Path, database_url: str) -> None:
    from ray import serve

    from graphs.app import build_app
    from visionserve.settings import get_settings

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


def jobs_both(serve_base: str, home: Path, database_url: str) -> tuple[float, float]:
    """(through Serve, under plain uvicorn) on one database."""
    from visionserve.store.keys import KeyStore

    key, _ = KeyStore(database_url).create("bench", rate_limit_per_minute=1_000_000)
    trace = str(home / "trace")
    with uvicorn(home / "uvicorn", database_url) as plain_base:
        plain = asyncio.run(accept_jobs(plain_base, key, trace))
    served = asyncio.run(accept_jobs(serve_base, key, trace))
    return served, plain


def main() -> None:
    import ray
    from ray import serve

    switches = {k: v for k, v in sorted(os.environ.items()) if k.startswith("RAY_SERVE_")}
    home = Path(tempfile.mkdtemp(prefix="vs-bench-"))
    sqlite_url = f"sqlite:///{home / 'visionserve.db'}"
    serve_port = free_port()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
    serve_base = f"http://127.0.0.1:{serve_port}"
    try:
        serve_app(home, sqlite_url)
        with uvicorn(home / "uvicorn-noop", f"sqlite:///{home / 'noop.db'}") as plain_base:
            lat = latency({"plain": plain_base, "serve": serve_base}, "/edit/health")
            plain, served = lat["plain"], lat["serve"]
        jobs_sqlite = jobs_both(serve_base, home, sqlite_url)
        with postgres_schema() as pg_url:
            serve_app(home, pg_url)
            jobs_pg = jobs_both(serve_base, home, pg_url)
    finally:
        serve.shutdown()
        ray.shutdown()

    print(f"Ray Serve switches: {switches or 'Ray defaults'}")
    print(f"no-op GET /edit/health, {N_LATENCY} sequential requests (ms)")
    print(f"  {'':<22}{'median':>10}{'p99':>10}")
    print(f"  {'plain uvicorn':<22}{plain['median']:>10.2f}{plain['p99']:>10.2f}")
    print(f"  {'Serve ingress':<22}{served['median']:>10.2f}{served['p99']:>10.2f}")
    print(
        f"  {'added by Serve':<22}{served['median'] - plain['median']:>10.2f}"
        f"{served['p99'] - plain['p99']:>10.2f}"
    )
    print(f"jobs accepted (POST -> 202, a committed row each, {CONCURRENCY} clients, jobs/s)")
    for db, (ours, base) in (("SQLite", jobs_sqlite), ("PostgreSQL", jobs_pg)):
        print(f"  {db:<11} Serve {ours:6.0f}   plain uvicorn {base:6.0f}   ratio {ours / base:.2f}")
    record("no-op median, Serve vs uvicorn", served["median"], "ms", baseline=plain["median"])
    record("no-op p99, Serve vs uvicorn", served["p99"], "ms", baseline=plain["p99"])
    added_median = served["median"] - plain["median"]
    record("no-op median added by Serve", added_median, "ms", goal="<= 3", goal_on="value")
    added_p99 = served["p99"] - plain["p99"]
    record("no-op p99 added by Serve", added_p99, "ms", goal="<= 5", goal_on="value")
    for db, (ours, base), goal in (
        ("SQLite", jobs_sqlite, ">= 250"),
        ("PostgreSQL", jobs_pg, ">= 500"),
    ):
        record(f"jobs accepted, {db}, Serve vs uvicorn", ours, "jobs/s", baseline=base)
        record(f"jobs accepted, {db}", ours, "jobs/s", goal=goal, goal_on="value")


if __name__ == "__main__":
    main()
