"""edit on the shared local Ray + Serve, played as a watsonx Orchestrate client would.

A callback receiver on loopback (allow-listed in the test settings) gets every
callback; each payload's exact key set and types are checked against the contract,
for base64 results, COS results (moto's S3 server: the presigned URL is fetched and
the image checked) and a COS -> COS batch run as a Ray Data job (a prefix with good,
corrupt and non-image files: ``completed_with_errors`` with the right counts). Pixel
checks prove the operations did what the prompt said.
"""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.fixtures.receiver import Receiver
from tests.scenes import iou, object_scene, textured_background
from tests.serve.conftest import EDIT_BUCKETS
from visionserve.platform.webhooks import EVENT_ID_HEADER

pytestmark = [pytest.mark.ray, pytest.mark.slow]

B64_TYPES = {
    "status": str,
    "job_id": str,
    "filename": str,
    "result_image_base64": str,
    "result_mime_type": str,
}
COS_TYPES = {
    "status": str,
    "job_id": str,
    "filename": str,
    "object_key": str,
    "result_url": str,
    "expires_in": int,
}
BATCH_TYPES = {
    "status": str,
    "job_id": str,
    "total_files": int,
    "processed": int,
    "failed": int,
    "fallback_local": int,
    "duration_seconds": float,
    "total_files_processed": int,
    "output_bucket": str,
    "output_prefix": str,
    "errors": list,
}


def check(payload: dict[str, Any], types: dict[str, type]) -> None:
    """Exactly these keys, each of its type (bool is no int here)."""
    assert set(payload) == set(types), sorted(set(payload) ^ set(types))
    for key, kind in types.items():
        value = payload[key]
        assert isinstance(value, kind) and not isinstance(value, bool), (key, value)


def b64(img: Image.Image, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return base64.b64encode(buf.getvalue()).decode()


def encoded(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def luminance(img: Image.Image) -> float:
    return float(np.asarray(img.convert("L"), np.float32).mean())


class Client:
    """What an Orchestrate tool does: POST with a callbackUrl, wait for the callback."""

    def __init__(self, base_url: str, receiver: Receiver) -> None:
        self.base = f"{base_url}/edit"
        self.receiver = receiver

    def submit(self, path: str, body: dict[str, Any]) -> str:
        r = httpx.post(
            f"{self.base}{path}", json=body, headers={"callbackUrl": self.receiver.url}, timeout=30
        )
        assert r.status_code == 202, r.text
        assert set(r.json()) == {"accepted", "job_id"} and r.json()["accepted"] is True
        return str(r.json()["job_id"])

    def callback(self, job_id: str, timeout: float = 240.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for received in list(self.receiver.requests):
                payload = json.loads(received.body)
                if payload.get("job_id") == job_id:
                    assert received.headers[EVENT_ID_HEADER].endswith(job_id)
                    return payload  # type: ignore[no-any-return]
            time.sleep(0.2)
        state = httpx.get(f"{self.base}/jobs/{job_id}", timeout=10).json()
        raise AssertionError(f"no callback for {job_id}: {state}")


def test_edit_as_a_watsonx_orchestrate_client(  # type: ignore[no-untyped-def]
    serve_cluster, receiver, edit_buckets, s3_server
) -> None:
    buckets = edit_buckets
    client = Client(serve_cluster.base_url, receiver)
    assert httpx.get(f"{client.base}/health").json() == {"ok": True}
    config = httpx.get(f"{client.base}/cos/config").json()
    assert config["endpoint"] == s3_server.endpoint_url
    assert (config["input_bucket"], config["output_bucket"]) == EDIT_BUCKETS

    # Every request is submitted first, so the cluster works on them together.
    photo = textured_background((160, 120), seed=7)
    scene, truth = object_scene(size=(256, 192))
    small = textured_background((64, 48), seed=2)
    from skimage import data as skdata

    astronaut = Image.fromarray(skdata.astronaut())
    s3 = buckets["client"]
    for i in range(3):
        s3.put_object(
            Bucket=buckets["input"],
            Key=f"shoot/photo{i}.jpg",
            Body=encoded(textured_background((96, 72), seed=i), "JPEG"),
        )
    s3.put_object(Bucket=buckets["input"], Key="shoot/broken.png", Body=b"\x89PNG\r\n\x1a\nnope")
    s3.put_object(Bucket=buckets["input"], Key="shoot/readme.txt", Body=b"not an image")

    brighter = client.submit(
        "/process-image-async-b64",
        {"prompt": "make it 25% brighter", "filename": "photo.png", "image_base64": b64(photo)},
    )
    upscaled = client.submit(
        "/process-image-async-b64",
        {"prompt": "upscale it 2x", "filename": "small.png", "image_base64": b64(small)},
    )
    faces = client.submit(
        "/process-image-async-b64",
        {"prompt": "blur the faces", "filename": "astronaut.png", "image_base64": b64(astronaut)},
    )
    cutout = client.submit(
        "/process-image-async",
        {"prompt": "remove the background", "filename": "product.png", "image_base64": b64(scene)},
    )
    broken = client.submit(
        "/process-image-async",
        {"prompt": "make it brighter", "filename": "bad.png", "image_base64": "bm90IGFuIGltYWdl"},
    )
    batch = client.submit("/batch-process-images", {"prompt": "make it 30% brighter"})

    # base64: brightness up by the share asked, size kept.
    payload = client.callback(brighter)
    check(payload, B64_TYPES)
    assert payload["status"] == "completed" and payload["filename"] == "photo.png"
    out = Image.open(io.BytesIO(base64.b64decode(payload["result_image_base64"])))
    assert out.size == photo.size and payload["result_mime_type"] == "image/png"
    assert luminance(out) == pytest.approx(luminance(photo) * 1.25, rel=0.05)

    # Upscale through the shared upscale deployment (waifu2x): exactly twice the size.
    payload = client.callback(upscaled)
    check(payload, B64_TYPES)
    out = Image.open(io.BytesIO(base64.b64decode(payload["result_image_base64"])))
    assert out.size == (128, 96)

    # The face in skimage's astronaut photo is blurred; the rest of the picture is not.
    payload = client.callback(faces)
    check(payload, B64_TYPES)
    out = np.asarray(
        Image.open(io.BytesIO(base64.b64decode(payload["result_image_base64"]))).convert("RGB"),
        np.int16,
    )
    original = np.asarray(astronaut, np.int16)
    changed = np.abs(out - original).max(axis=2) > 8
    face = changed[65:175, 185:265]  # where her face is in the 512x512 photo
    assert face.mean() > 0.3, face.mean()
    outside = changed.copy()
    outside[20:260, 110:320] = False  # the face box and a margin for the detector's box
    assert outside.mean() < 0.01, outside.mean()

    # COS: the result is in the output bucket; the presigned URL serves it.
    payload = client.callback(cutout)
    check(payload, COS_TYPES)
    assert payload["object_key"] == f"results/{cutout}/product_modified.png"
    assert payload["expires_in"] == config["presign_expires"]
    fetched = httpx.get(payload["result_url"], timeout=30)
    assert fetched.status_code == 200
    out = Image.open(io.BytesIO(fetched.content))
    assert out.mode == "RGBA" and out.size == scene.size
    assert iou(np.asarray(out.getchannel("A")) > 127, truth) >= 0.85

    # Bad image data: a failed callback with a clear error.
    payload = client.callback(broken)
    check(payload, {"status": str, "job_id": str, "filename": str, "error": str})
    assert payload["status"] == "failed" and payload["filename"] == "bad.png"
    assert "image" in payload["error"].lower()

    # The batch, as a Ray Data job: good, corrupt and non-image files.
    payload = client.callback(batch, timeout=300)
    check(payload, BATCH_TYPES)
    assert payload["status"] == "completed_with_errors"
    assert (payload["total_files"], payload["processed"], payload["failed"]) == (4, 3, 1)
    assert payload["fallback_local"] == 0 and payload["total_files_processed"] == 3
    assert payload["output_bucket"] == buckets["output"]
    assert payload["output_prefix"] == f"results/batch/{batch}/"
    assert [e.split(":")[0] for e in payload["errors"]] == ["broken.png"]
    listed = s3.list_objects_v2(Bucket=buckets["output"], Prefix=payload["output_prefix"])
    keys = sorted(o["Key"] for o in listed.get("Contents", []))
    assert keys == [f"results/batch/{batch}/shoot/photo{i}_modified.png" for i in range(3)]
    source = Image.open(
        io.BytesIO(s3.get_object(Bucket=buckets["input"], Key="shoot/photo0.jpg")["Body"].read())
    )
    result = Image.open(
        io.BytesIO(s3.get_object(Bucket=buckets["output"], Key=keys[0])["Body"].read())
    )
    assert luminance(result) == pytest.approx(luminance(source) * 1.3, rel=0.06)

    view = httpx.get(f"{client.base}/jobs/{batch}", timeout=10).json()
    assert view["state"] == "completed" and view["kind"] == "batch"
    assert view["deliveries"][0]["url"] == receiver.url
