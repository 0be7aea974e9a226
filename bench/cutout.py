"""cutout benchmarks, side by side in one run (``python -m bench.cutout``).

1. Shotgun latency over the local models vs the slowest single model alone (goal
   <= 1.25 when each model has its own core) and vs the models one after another.
2. u2netp throughput at 8 concurrent clients, dynamically batched vs unbatched
   (the same deployment reconfigured through user_config).
3. Lanczos x4 output megapixels/s: our premultiplied-alpha resampling vs Pillow's
   plain ``resize(LANCZOS)`` on the same RGBA image.
4. RSS of every replica before and after 300 shotgun requests (goal: growth < 10%).
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench._util import median_ms, record, start_ray, start_serve
from tests.scenes import object_scene

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
LATENCY_RUNS = 20
THROUGHPUT_REQUESTS = 64
SOAK_REQUESTS = 300


def b64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def replica_rss_mb() -> dict[str, float]:
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "ServeReplica:visionserve:" not in cmd:
                continue
            status = (entry / "status").read_text()
        except OSError:
            continue
        name = cmd.split("ServeReplica:visionserve:")[1].split()[0]
        rss = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:"))
        out[f"{name}[{entry.name}]"] = rss / 1024
    return out


def lanczos_bench() -> tuple[float, float]:
    from visionserve.models.upscale import upscale_lanczos

    scene, mask = object_scene(size=(512, 768))
    rgba = scene.convert("RGBA")
    rgba.putalpha(Image.fromarray((mask * 255).astype(np.uint8)))
    out_mp = 512 * 4 * 768 * 4 / 1e6
    ours = median_ms(lambda: upscale_lanczos(rgba, 4), 10)
    plain = median_ms(lambda: rgba.resize((2048, 3072), Image.Resampling.LANCZOS), 10)
    return out_mp / (ours / 1000), out_mp / (plain / 1000)


async def throughput(handle, image: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    sem = asyncio.Semaphore(8)

    async def one() -> None:
        async with sem:
            await handle.remove.remote(image, "png")

    await asyncio.gather(*(one() for _ in range(8)))
    t = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(THROUGHPUT_REQUESTS)))
    return THROUGHPUT_REQUESTS / (time.perf_counter() - t)


def main() -> None:
    import ray
    from ray import serve

    from deployments.bg_removal import BackgroundRemoval
    from graphs.app import build_app
    from visionserve.settings import get_settings

    home = Path(tempfile.mkdtemp(prefix="vs-bench-cutout-"))
    start_ray()
    server = start_serve()
    settings = {
        "home": str(home),
        "model_home": str(get_settings().model_home),
        "limits": {"rate_limits": {"cutout": 1_000_000}},
    }
    serve.run(
        build_app({"settings": settings, "surfaces": ["cutout"]}),
        name="visionserve",
        route_prefix="/",
    )
    base = f"{server}/cutout"
    scene, _ = object_scene(size=(320, 240))
    body = {"image": b64(scene), "return_base64": False}
    client = httpx.Client(timeout=120)

    def run(models: list[str]) -> None:
        r = client.post(f"{base}/remove-background", json={**body, "include_models": models})
        r.raise_for_status()

    try:
        u2netp = median_ms(lambda: run(["local_u2netp"]), LATENCY_RUNS)
        u2net = median_ms(lambda: run(["local_u2net"]), LATENCY_RUNS)
        shotgun = median_ms(lambda: run(["all"]), LATENCY_RUNS)
        sequential = median_ms(lambda: (run(["local_u2netp"]), run(["local_u2net"])), LATENCY_RUNS)

        before = replica_rss_mb()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: run(["all"]), range(SOAK_REQUESTS)))
        after = replica_rss_mb()

        # Free the cores the whole app holds; the throughput run gets its own replica.
        serve.delete("visionserve")
        snapshot = get_settings().model_dump(mode="json")
        image = np.asarray(scene)
        rates = {}
        for label, batch in (("unbatched", 1), ("batched", 8)):
            handle = serve.run(
                BackgroundRemoval.options(
                    name="bench-u2netp",
                    user_config={
                        "max_batch_size": batch,
                        "batch_wait_timeout_s": 0.02,
                        "threads": 1,
                    },
                    autoscaling_config={"min_replicas": 1, "max_replicas": 1},
                ).bind("u2netp", snapshot),
                name="bench-bg",
                route_prefix="/bench-bg",
            )
            rates[label] = asyncio.run(throughput(handle, image))
    finally:
        client.close()
        serve.shutdown()
        ray.shutdown()
    ours_mps, plain_mps = lanczos_bench()

    slowest = max(u2netp, u2net)
    record("shotgun vs slowest single model", shotgun, "ms", baseline=slowest, goal="<= 1.25")
    record("shotgun vs models one after another", shotgun, "ms", baseline=sequential)
    record(
        "u2netp 8 clients, batched vs unbatched",
        rates["batched"],
        "images/s",
        baseline=rates["unbatched"],
        goal=">= 1.0",
    )
    record("Lanczos x4 premultiplied vs Pillow", ours_mps, "MP/s", baseline=plain_mps)
    print("shotgun over u2netp + u2net, 320x240, median of", LATENCY_RUNS, "(ms)")
    print(f"  u2netp alone {u2netp:8.1f}   u2net alone {u2net:8.1f}")
    print(f"  shotgun      {shotgun:8.1f}   one after another {sequential:8.1f}")
    print(f"  shotgun / slowest single = {shotgun / slowest:.2f} (goal <= 1.25)")
    print(f"  shotgun / sequential     = {shotgun / sequential:.2f}")
    print("u2netp, 8 concurrent clients (images/s)")
    print(
        f"  unbatched {rates['unbatched']:.2f}   batched (<=8) {rates['batched']:.2f}"
        f"   ratio {rates['batched'] / rates['unbatched']:.2f}"
    )
    print("Lanczos x4 of a 512x768 RGBA image (output megapixels/s)")
    print(
        f"  premultiplied (ours) {ours_mps:.1f}   Pillow resize(LANCZOS) {plain_mps:.1f}"
        f"   ratio {ours_mps / plain_mps:.2f}"
    )
    print(f"replica RSS before/after {SOAK_REQUESTS} shotgun requests (MB)")
    worst = 0.0
    for name in sorted(before):
        if name in after:
            growth = (after[name] - before[name]) / before[name] * 100
            worst = max(worst, growth)
            print(f"  {name:<32}{before[name]:8.0f}{after[name]:8.0f}  {growth:+5.1f}%")
    print(f"  worst growth {worst:+.1f}% (goal < 10%)")
    record("replica RSS worst growth", worst, "%", goal="< 10", goal_on="value")


if __name__ == "__main__":
    main()
