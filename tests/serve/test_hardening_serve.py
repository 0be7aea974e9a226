"""Hardening on a real local Ray Serve: outputs over the size limit are refused before any
work, the cluster stays healthy, and a replica gives back what a large request took.

The first test is the incident: a 7999x7999 RGBA PNG (under the 64 MP input cap) sent
to ``/cutout/upscale`` at x4 asked for a billion-pixel output; the node ran out of
memory and Ray killed seven workers.
"""

from __future__ import annotations

import base64
import io
import os
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from visionserve.settings import LimitSettings

pytestmark = [pytest.mark.ray, pytest.mark.slow]

LIMIT = LimitSettings().max_output_pixels  # what the cluster runs with: the default


def png_b64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def replica_pids(deployment: str) -> list[int]:
    """This session's replicas of ``deployment`` (other sessions may run clusters too)."""
    import psutil

    title = f"ServeReplica:visionserve:{deployment}"
    found = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if cmdline.startswith("ray::") and cmdline.split()[0].endswith(title):
            found.append(child.pid)
    return found


def heap_bytes(pid: int) -> int:
    """Private anonymous memory (``RssAnon``): the heap, without object-store pages."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no RssAnon for {pid}")


# A deployment only resizing is well: on the shared cluster, the load of earlier tests
# may still be scaling one (the ocr replicas after the documents tests).
WELL = {"HEALTHY", "UPSCALING", "DOWNSCALING"}


def assert_all_healthy(base_url: str) -> None:
    body = httpx.get(f"{base_url}/health", timeout=30).json()
    unhealthy = {name: s for name, s in body["deployments"].items() if s not in WELL}
    assert not unhealthy, unhealthy
    assert {"ingress", "upscale", "cutout-graph", "bg-u2net", "bg-u2netp"} <= set(
        body["deployments"]
    )


def test_the_incident_request_is_refused_at_once_and_nothing_dies(serve_cluster) -> None:  # type: ignore[no-untyped-def]
    image = png_b64(Image.new("RGBA", (7999, 7999), (40, 90, 160, 255)))
    assert len(image) < 1_000_000  # a flat image: a few hundred KB, under every input cap
    upscale_pids = replica_pids("upscale")
    before = {pid: heap_bytes(pid) for pid in upscale_pids}
    started = time.perf_counter()
    r = httpx.post(
        f"{serve_cluster.base_url}/cutout/upscale",
        json={"image": image, "scale_factor": 4},
        timeout=120,
    )
    elapsed = time.perf_counter() - started
    err = r.json()["error"]
    assert r.status_code == 413 and err["type"] == "image_too_large", r.text
    assert err["details"]["max_output_pixels"] == LIMIT
    assert err["details"]["output_pixels"] == 31996 * 31996
    assert elapsed < 30  # decoding the input is all the work done (it was 68 s and a 500)
    # The ingress refused it: the upscale replica never saw the pixels.
    assert replica_pids("upscale") == upscale_pids
    for pid, heap in before.items():
        assert heap_bytes(pid) < heap * 1.10
    assert_all_healthy(serve_cluster.base_url)


def test_process_whose_cutouts_could_not_be_upscaled_is_refused(serve_cluster) -> None:  # type: ignore[no-untyped-def]
    # 2000x2000 is a fine input for background removal, but x4 makes 64 MP cut-outs.
    image = png_b64(Image.new("RGB", (2000, 2000), (200, 200, 200)))
    r = httpx.post(
        f"{serve_cluster.base_url}/cutout/process",
        json={"image": image, "upscale_factor": 4},
        timeout=120,
    )
    err = r.json()["error"]
    assert r.status_code == 413 and err["type"] == "image_too_large", r.text
    assert err["details"]["max_output_pixels"] == LIMIT
    assert (err["details"]["output_width"], err["details"]["output_height"]) == (8000, 8000)
    assert_all_healthy(serve_cluster.base_url)


def test_upscale_replica_gives_memory_back_after_a_request_at_the_limit(serve_cluster) -> None:  # type: ignore[no-untyped-def]
    side = int((LIMIT // 16) ** 0.5)  # 1414: x4 is 5656x5656, just under the limit
    rng = np.random.default_rng(0)
    # Photo-like noise: its PNG is large (about 100 MB at 32 MP), as a worst case.
    image = png_b64(Image.fromarray(rng.integers(0, 256, (side, side, 4), dtype=np.uint8)))
    (pid,) = replica_pids("upscale")
    warm = httpx.post(
        f"{serve_cluster.base_url}/cutout/upscale",
        json={"image": png_b64(Image.new("RGBA", (64, 64), (1, 2, 3, 4))), "scale_factor": 4},
        timeout=60,
    )
    assert warm.status_code == 200, warm.text
    before = heap_bytes(pid)
    for _ in range(2):  # the second request is the one glibc would keep
        r = httpx.post(
            f"{serve_cluster.base_url}/cutout/upscale",
            json={"image": image, "scale_factor": 4, "return_base64": False},
            timeout=300,
        )
        assert r.status_code == 200, r.text
        assert r.json()["output_dimensions"] == {"width": side * 4, "height": side * 4}
    after = heap_bytes(pid)
    assert after < before * 1.10, f"upscale replica heap {before >> 20} -> {after >> 20} MiB"
    assert_all_healthy(serve_cluster.base_url)
