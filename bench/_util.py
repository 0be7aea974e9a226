"""Shared by the benchmarks: timing, percentiles, a loopback port and the results file.

Every figure a benchmark prints is also recorded with :func:`record` into
``var/bench/results.json`` (one list of entries: name, value, unit, baseline, ratio,
goal, pass, plus the bench module, the time and the 1-minute load average), so that
runs can be compared; ``python -m bench._report`` prints them as one table. ``make
bench`` starts a fresh file (:func:`reset`) and prints the table at the end.
"""

from __future__ import annotations

import fcntl
import json
import math
import operator
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("VISIONSERVE_BENCH_RESULTS", REPO / "var" / "bench" / "results.json"))
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ray(memory_bytes: int | None = None) -> None:
    """A fresh local Ray for one benchmark: two CPUs, no dashboard, the repo importable,
    Ray's settings of ``cluster/ray.env`` (as ``make run``) unless the environment has its own.

    ``memory_bytes`` sizes the node's memory resource to what the benchmark deploys,
    whatever other processes hold at the time (Ray would size it from the free memory).
    """
    import ray

    from cluster.profiles import use_ray_env

    use_ray_env()
    extra = {} if memory_bytes is None else {"_memory": memory_bytes}
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
        **extra,
    )


def start_serve() -> str:
    """Serve's HTTP proxy on a free loopback port; its base URL."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return f"http://127.0.0.1:{port}"


def summary(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"median": statistics.median(ordered), "p99": p99}


def median_ms(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``fn`` over ``runs`` calls, after one warm-up call."""
    fn()  # warm: load models, first-call costs
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def check(value: float, goal: str) -> bool:
    """Whether ``value`` meets ``goal``, written as an operator and a number: ``">= 1.6"``."""
    op, _, bound = goal.strip().partition(" ")
    if op not in _OPS:
        raise ValueError(f"goal {goal!r}: expected one of {sorted(_OPS)} then a number")
    return _OPS[op](value, float(bound))


def record(
    name: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    goal: str | None = None,
    goal_on: str = "ratio",
) -> dict[str, Any]:
    """Append one figure to the results file and return its entry.

    Args:
        name: What was measured, unique within the bench module ("u2netp batched").
        value: Ours.
        unit: Of ``value`` and ``baseline`` ("images/s", "ms").
        baseline: The same measure of the baseline in the same run; gives ``ratio``.
        goal: ``"<op> <number>"`` (``">= 1.6"``), checked on ``goal_on``.
        goal_on: ``"ratio"`` (value / baseline) or ``"value"``.
    """
    if math.isnan(value):
        value = None  # type: ignore[assignment]  # not measured (e.g. no scale-out)
    ratio = value / baseline if baseline and value is not None else None
    checked = ratio if goal_on == "ratio" else value
    passed = None if goal is None or checked is None else check(checked, goal)
    entry = {
        "bench": Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "?",
        "name": name,
        "value": None if value is None else round(float(value), 4),
        "unit": unit,
        "baseline": None if baseline is None else round(float(baseline), 4),
        "ratio": None if ratio is None else round(ratio, 4),
        "goal": None if goal is None else f"{goal_on} {goal}",
        "pass": passed,
        "load_1m": round(os.getloadavg()[0], 2),
        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _update(lambda entries: [*entries, entry])
    return entry


def reset() -> None:
    """Start a fresh results file (``make bench`` does, before the first module)."""
    _update(lambda _: [])


def load() -> list[dict[str, Any]]:
    try:
        return list(json.loads(RESULTS.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def _update(change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
    """Read, change and write the file under a lock (modules may run side by side)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with (RESULTS.parent / ".results.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = change(load())
        tmp = RESULTS.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=1) + "\n")
        tmp.replace(RESULTS)
