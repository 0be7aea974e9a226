"""cutout on a real local Ray Serve: shotgun fan-out and the bg-removal → upscale graph."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.scenes import iou, object_scene

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def b64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def alpha_mask(data: str, size: tuple[int, int]) -> np.ndarray:
    out = Image.open(io.BytesIO(base64.b64decode(data)))
    return np.asarray(out.getchannel("A").resize(size, Image.Resampling.BILINEAR)) > 127


def test_health_reports_models(serve_cluster) -> None:  # type: ignore[no-untyped-def]
    body = httpx.get(f"{serve_cluster.base_url}/cutout/health", timeout=10).json()
    assert body["status"] == "healthy"
    assert body["services"] == {
        "local_u2netp": "loaded",
        "local_u2net": "loaded",
        "upscale": "loaded",
    }


def test_shotgun_through_serve(serve_cluster) -> None:  # type: ignore[no-untyped-def]
    scene, truth = object_scene(shape="rounded", colour=(30, 80, 200))
    r = httpx.post(
        f"{serve_cluster.base_url}/cutout/remove-background",
        json={"image": b64(scene)},
        timeout=120,
    )
    body = r.json()
    assert r.status_code == 200 and body["status"] == "completed", r.text
    assert [x["model_id"] for x in body["results"]] == ["local_u2netp", "local_u2net"]
    for result in body["results"]:
        assert iou(alpha_mask(result["image_base64"], scene.size), truth) >= 0.9
        assert (
            httpx.get(
                result["image_url"].replace("http://127.0.0.1:8000", serve_cluster.base_url)
            ).status_code
            == 200
        )


def test_process_pipeline_through_serve(serve_cluster) -> None:  # type: ignore[no-untyped-def]
    scene, truth = object_scene(size=(200, 150))
    r = httpx.post(
        f"{serve_cluster.base_url}/cutout/process",
        json={"image": b64(scene), "upscale_factor": 4},
        timeout=120,
    )
    body = r.json()
    assert r.status_code == 200 and body["status"] == "completed", r.text
    for result in body["results"]:
        assert result["output_dimensions"] == {"width": 800, "height": 600}
        assert iou(alpha_mask(result["image_base64"], scene.size), truth) >= 0.9
