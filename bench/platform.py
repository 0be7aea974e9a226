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

Serve runs four times, each on a fresh Ray: with Ray's defaults (through the proxy),
with three request-path switches (user code and router on the replica's main loop,
buffered request logs), as ``make run`` starts it (``cluster/ray.env``: the proxy
talks gRPC to the ingress replica) and with direct ingress besides (requests to the
ingress replica's own port, ``make run DIRECT_INGRESS=1``); PostgreSQL on the last.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench._util import REPO, free_port, record, start_ray, start_serve, summary

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
N_LATENCY = 400
N_JOBS = 400
JOB_ROUNDS = 3
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
                # The sample surface accepts jobs; without its job module the job worker
                # leaves them queued, as plain uvicorn runs none: both measure accepting.
                "extra_surfaces": ["tests.sample_jobs:SURFACE"],
            }
        ),
        name="visionserve",
        route_prefix="/",
    )


def jobs_both(serve_base: str, home: Path, database_url: str) -> tuple[float, float]:
    """(through Serve, under plain uvicorn) on one database: the median of JOB_ROUNDS
    rounds, the two taking turns (a round is 2 s or less, and this machine's rate drifts)."""
    from visionserve.store.keys import KeyStore

    key, _ = KeyStore(database_url).create("bench", rate_limit_per_minute=1_000_000)
    trace = str(home / "trace")
    served, plain = [], []
    with uvicorn(home / "uvicorn", database_url) as plain_base:
        for _ in range(JOB_ROUNDS):
            plain.append(asyncio.run(accept_jobs(plain_base, key, trace)))
            served.append(asyncio.run(accept_jobs(serve_base, key, trace)))
    return statistics.median(served), statistics.median(plain)


# Ray's default transport from the proxy to the replicas (cluster/ray.env turns gRPC on).
RAY_DEFAULTS = {"RAY_SERVE_PROXY_USE_GRPC": "0"}
# Ray Serve's request-path switches (Ray 2.60), tried on Ray's defaults: they shorten the
# no-op request but accept no more jobs, so `make run` leaves them off.
SWITCHES = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
}
# Direct ingress (Ray 2.60): the ingress replica serves HTTP on a port of its own
# (RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT and up) instead of behind the proxy.
DIRECT_PORT = 31500


def direct_env() -> dict[str, str]:
    return {
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(DIRECT_PORT),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(DIRECT_PORT + 50),
    }


# Each on a fresh Ray; what a variant leaves unset comes from cluster/ray.env.
VARIANTS = {
    "Ray defaults": RAY_DEFAULTS,
    "switches": {**RAY_DEFAULTS, **SWITCHES},
    "make run": {},
    "direct ingress": direct_env(),
}


def direct_base() -> str:
    """The ingress replica's own HTTP port (the first of the range that answers /health)."""
    for port in range(DIRECT_PORT, DIRECT_PORT + 51):
        base = f"http://127.0.0.1:{port}"
        try:
            if "surfaces" in httpx.get(f"{base}/health", timeout=2).json():
                return base
        except (httpx.HTTPError, ValueError):
            continue
    raise RuntimeError("direct ingress: no ingress replica answers on its port range")


def run_variant(
    env: dict[str, str], home: Path, plain_base: str, with_postgres: bool
) -> dict[str, object]:
    """A fresh Ray with ``env`` (its workers inherit it): latency, then accepted jobs."""
    import ray
    from ray import serve

    for k in [k for k in os.environ if k.startswith("RAY_SERVE_")]:
        del os.environ[k]
    os.environ.update(env)
    home.mkdir(parents=True)
    sqlite_url = f"sqlite:///{home / 'visionserve.db'}"
    start_ray()
    serve_base = start_serve()
    out: dict[str, object] = {}
    try:
        serve_app(home, sqlite_url)
        if env.get("RAY_SERVE_ENABLE_DIRECT_INGRESS") == "1":
            serve_base = direct_base()
        out["latency"] = latency({"plain": plain_base, "serve": serve_base}, "/edit/health")
        out["sqlite"] = jobs_both(serve_base, home, sqlite_url)
        if with_postgres:
            with postgres_schema() as pg_url:
                serve_app(home, pg_url)
                if env.get("RAY_SERVE_ENABLE_DIRECT_INGRESS") == "1":
                    serve_base = direct_base()  # the redeployed replica's port
                out["postgres"] = jobs_both(serve_base, home, pg_url)
    finally:
        serve.shutdown()
        ray.shutdown()
    return out


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="vs-bench-"))
    results: dict[str, dict[str, Any]] = {}
    with uvicorn(home / "uvicorn-noop", f"sqlite:///{home / 'noop.db'}") as plain_base:
        for i, (name, env) in enumerate(VARIANTS.items()):
            last = i == len(VARIANTS) - 1
            results[name] = run_variant(env, home / f"v{i}", plain_base, with_postgres=last)

    print(f"no-op GET /edit/health, {N_LATENCY} sequential requests each (ms)")
    print(f"  {'':<34}{'median':>8}{'p99':>8}{'added median':>14}{'added p99':>11}")
    for name, r in results.items():
        lat = r["latency"]
        plain, served = lat["plain"], lat["serve"]
        print(
            f"  {'plain uvicorn (' + name + ' run)':<34}{plain['median']:>8.2f}{plain['p99']:>8.2f}"
        )
        print(
            f"  {'Serve, ' + name:<34}{served['median']:>8.2f}{served['p99']:>8.2f}"
            f"{served['median'] - plain['median']:>14.2f}{served['p99'] - plain['p99']:>11.2f}"
        )
    print(f"switches: {SWITCHES}; direct ingress: the ingress replica's own port")
    print(f"jobs accepted (POST -> 202, a committed row each, {CONCURRENCY} clients, jobs/s)")
    for name, r in results.items():
        for db in ("sqlite", "postgres"):
            if db in r:
                ours, base = r[db]
                print(
                    f"  {db:<9} Serve ({name:<14}) {ours:6.0f}   plain uvicorn {base:6.0f}"
                    f"   ratio {ours / base:.2f}"
                )

    default, direct = results["Ray defaults"], results["direct ingress"]
    d_lat = default["latency"]["serve"]
    for name, r in (("3 switches", results["switches"]), ("gRPC proxy", results["make run"])):
        lat = r["latency"]["serve"]
        record(
            f"no-op median, {name} vs Ray defaults", lat["median"], "ms", baseline=d_lat["median"]
        )
        record(
            f"jobs accepted, SQLite, {name} vs Ray defaults",
            r["sqlite"][0],
            "jobs/s",
            baseline=default["sqlite"][0],
        )
    for name, r in (("proxy", results["make run"]), ("direct ingress", direct)):
        served, plain = r["latency"]["serve"], r["latency"]["plain"]
        record(
            f"no-op median, Serve ({name}) vs uvicorn",
            served["median"],
            "ms",
            baseline=plain["median"],
        )
        record(
            f"no-op median added by Serve ({name})",
            served["median"] - plain["median"],
            "ms",
            goal="<= 3",
            goal_on="value",
        )
        record(
            f"no-op p99 added by Serve ({name})",
            served["p99"] - plain["p99"],
            "ms",
            goal="<= 5",
            goal_on="value",
        )
        served_jobs, plain_jobs = r["sqlite"]
        record(
            f"jobs accepted, SQLite, Serve ({name}) vs uvicorn",
            served_jobs,
            "jobs/s",
            baseline=plain_jobs,
        )
        record(
            f"jobs accepted, SQLite, Serve ({name})",
            served_jobs,
            "jobs/s",
            goal=">= 250",
            goal_on="value",
        )
    served_jobs, plain_jobs = direct["postgres"]
    record(
        "jobs accepted, PostgreSQL, Serve (direct ingress) vs uvicorn",
        served_jobs,
        "jobs/s",
        baseline=plain_jobs,
    )
    record(
        "jobs accepted, PostgreSQL, Serve (direct ingress)",
        served_jobs,
        "jobs/s",
        goal=">= 500",
        goal_on="value",
    )


if __name__ == "__main__":
    main()
