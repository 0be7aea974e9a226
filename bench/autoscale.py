"""Autoscaling on one 2-core node (``python -m bench.autoscale``).

8 clients (two API keys, 4 requests in flight each, as cutout's contract allows) send
``remove-background`` with ``local_u2netp`` for LOAD_S seconds. Meanwhile ``/health``
is sampled every second: ``bg-u2netp``'s replicas by state and its ``scaling`` entry.
Reported: images/s while one replica serves (the baseline, same run) and after the
second replica runs (goal >= 1.6x), the seconds until scale-out and, after the load,
until scale-down, and whether ``/health`` ever said ``stuck``.

Only the cutout surface with u2netp is deployed (memory); an idle Ray actor reserves
the CPUs that the other deployments of serve_config.yaml reserve with their minimum
replicas, so Ray has the same room left to scale in as under ``make run`` on 2 CPUs.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench._util import REPO, record, start_ray, start_serve
from tests.scenes import object_scene

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
LOAD_S = float(os.environ.get("BENCH_AUTOSCALE_LOAD_S", 120))
COOL_S = float(os.environ.get("BENCH_AUTOSCALE_COOL_S", 150))  # wait for scale-down
DEPLOYMENT = "bg-u2netp"
CLIENTS_PER_KEY, KEYS = 4, 2
SETTLE_S = 5.0  # after a replica count changes, before its rate is counted


def reserved_cpus(exclude: set[str]) -> float:
    """CPUs the minimum replicas of serve_config.yaml's other deployments reserve."""
    (app,) = yaml.safe_load((REPO / "serve_config.yaml").read_text())["applications"]
    return sum(
        d["ray_actor_options"]["num_cpus"] * d["autoscaling_config"]["min_replicas"]
        for d in app["deployments"]
        if d["name"] not in exclude
    )


def png_b64() -> str:
    scene, _ = object_scene(size=(320, 240))
    buf = io.BytesIO()
    scene.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


async def load(base: str, keys: list[str], until: float, done: list[float]) -> int:
    """Keep CLIENTS_PER_KEY requests in flight per key until ``until``; errors counted."""
    body = {"image": png_b64(), "return_base64": False, "include_models": ["local_u2netp"]}
    errors = 0

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < until:
            r = await c.post("/cutout/remove-background", json=body)
            if r.status_code == 200:
                done.append(time.monotonic())
            else:
                errors += 1
                await asyncio.sleep(0.5)

    clients = [
        httpx.AsyncClient(base_url=base, timeout=120, headers={"Authorization": f"Bearer {k}"})
        for k in keys
    ]
    try:
        await asyncio.gather(*(client(c) for c in clients for _ in range(CLIENTS_PER_KEY)))
    finally:
        for c in clients:
            await c.aclose()
    return errors


async def sample(base: str, stop: asyncio.Event, out: list[dict[str, Any]]) -> None:
    """``/health``'s view of the deployment once a second."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        while not stop.is_set():
            try:
                h = (await c.get("/health")).json()
                out.append(
                    {
                        "t": time.monotonic(),
                        "replicas": h["replicas"].get(DEPLOYMENT, {}),
                        "scaling": h.get("scaling", {}).get(DEPLOYMENT),
                        "message": h.get("messages", {}).get(DEPLOYMENT),
                    }
                )
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            await asyncio.sleep(1)


def rate(done: list[float], start: float, end: float) -> float:
    n = sum(start <= t < end for t in done)
    return n / (end - start) if end > start else float("nan")


async def scenario(base: str, keys: list[str]) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    done: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(base, stop, samples))
    t0 = time.monotonic()
    errors = await load(base, keys, t0 + LOAD_S, done)
    t_end = time.monotonic()
    while time.monotonic() - t_end < COOL_S:  # scale-down
        last = samples[-1] if samples else None
        if last and last["t"] > t_end and sum(last["replicas"].values()) == 1:
            break
        await asyncio.sleep(1)
    stop.set()
    await sampler

    def first(pred: Any, after: float) -> float | None:
        return next((s["t"] for s in samples if s["t"] >= after and pred(s)), None)

    t_more = first(lambda s: sum(s["replicas"].values()) > 1, t0)  # a second one appears
    t_two = first(lambda s: s["replicas"].get("RUNNING", 0) >= 2, t0)
    t_down = first(lambda s: sum(s["replicas"].values()) == 1, t_end)
    one = rate(done, t0 + SETTLE_S, t_more or t_end)
    two = rate(done, t_two + SETTLE_S, t_end) if t_two else float("nan")
    states = [s["scaling"]["state"] for s in samples if s["scaling"]]
    return {
        "one": one,
        "two": two,
        "errors": errors,
        "images": len(done),
        "scale_out_s": None if t_two is None else t_two - t0,
        "scale_down_s": None if t_down is None else t_down - t_end,
        "max_running": max((s["replicas"].get("RUNNING", 0) for s in samples), default=0),
        "stuck": "stuck" in states,
        "states": sorted(set(states)),
        "timeline": [
            (round(s["t"] - t0), s["replicas"], (s["scaling"] or {}).get("state")) for s in samples
        ],
    }


def main() -> None:
    import ray
    from ray import serve

    from graphs.app import build_app
    from visionserve.settings import get_settings
    from visionserve.store.keys import KeyStore

    home = Path(tempfile.mkdtemp(prefix="vs-bench-autoscale-"))
    # What the deployed replicas reserve with a second bg-u2netp (about 5 GiB).
    start_ray(memory_bytes=6 * 1024**3)
    ours = {DEPLOYMENT, "upscale", "cutout-graph", "ingress", "job-worker"}
    ballast_cpus = round(reserved_cpus(ours), 3)

    @ray.remote(num_cpus=ballast_cpus)
    class Ballast:
        """Holds the CPUs the rest of the app's minimum replicas reserve; idle."""

        def ready(self) -> bool:
            return True

    ballast = Ballast.remote()  # type: ignore[attr-defined]
    ray.get(ballast.ready.remote(), timeout=120)
    server = start_serve()
    settings = {
        "home": str(home),
        "model_home": str(get_settings().model_home),
        "limits": {"rate_limits": {"cutout": 1_000_000}},
    }
    serve.run(
        build_app({"settings": settings, "surfaces": ["cutout"], "cutout": {"models": ["u2netp"]}}),
        name="visionserve",
        route_prefix="/",
    )
    deployed = {d for app in serve.status().applications.values() for d in app.deployments}
    assert deployed == ours, f"reserve for {deployed - ours} too"
    store = KeyStore(f"sqlite:///{home / 'visionserve.db'}")
    keys = [store.create(f"bench-{i}", rate_limit_per_minute=1_000_000)[0] for i in range(KEYS)]
    free = ray.available_resources().get("CPU", 0.0)
    try:
        out = asyncio.run(scenario(server, keys))
    finally:
        serve.shutdown()
        ray.shutdown()

    print(
        f"autoscaling {DEPLOYMENT} on 2 CPUs: the rest of the app reserves {ballast_cpus} "
        f"(held by an idle actor), {free:.2f} CPU free after start"
    )
    print(f"  {KEYS * CLIENTS_PER_KEY} clients for {LOAD_S:.0f} s: {out['images']} images")
    print("  replicas over time (s, replicas by state, scaling):")
    for t, replicas, state in out["timeline"][:: max(1, len(out["timeline"]) // 40)]:
        print(f"    {t:4d}  {replicas}  {state or ''}")
    print(f"  one replica   {out['one']:6.2f} images/s")
    print(f"  two replicas  {out['two']:6.2f} images/s  ratio {out['two'] / out['one']:.2f}")
    print(f"  scale-out after {out['scale_out_s']} s, scale-down {out['scale_down_s']} s after")
    print(f"  /health scaling states seen: {out['states']}; errors {out['errors']}")
    record(
        "u2netp 8 clients, after scale-out vs one replica",
        out["two"],
        "images/s",
        baseline=out["one"],
        goal=">= 1.6",
    )
    record("replicas running at most", out["max_running"], "replicas", goal=">= 2", goal_on="value")
    record(
        "scale-out after load start",
        out["scale_out_s"] if out["scale_out_s"] is not None else float("nan"),
        "s",
    )
    record(
        "scale-down after load end",
        out["scale_down_s"] if out["scale_down_s"] is not None else float("nan"),
        "s",
        goal=f"<= {COOL_S:.0f}",
        goal_on="value",
    )
    record("/health said stuck", float(out["stuck"]), "bool", goal="<= 0", goal_on="value")


if __name__ == "__main__":
    main()
