"""inspect end to end on a real local Ray Serve.

Upload generated textures with drawn defects (and their masks), train PatchCore
through the API (a durable job running a Ray task), export every format, predict
through the multiplexed deployment, run live pipelines from a generated video to
the filesystem and MQTT sinks, capture a frame, and receive WebRTC frames.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import uuid
import zipfile
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.textures import make_dataset

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def wait_job(client: httpx.Client, job_id: str, timeout_s: float = 420) -> tuple[dict, list]:  # type: ignore[type-arg]
    seen = []
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        seen.append((job["status"], job["progress"], job["metrics"]))
        if job["status"] in ("completed", "failed", "cancelled"):
            return job, seen
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def wait_active(client: httpx.Client, active_id: str, until, timeout_s: float = 120) -> dict:  # type: ignore[no-untyped-def, type-arg]
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        r = client.get(f"/active-pipelines/{active_id}")
        assert r.status_code == 200, r.text
        active = r.json()
        if until(active):
            return active
        time.sleep(0.3)
    raise AssertionError(f"active pipeline {active_id} never got there: {active}")


@pytest.fixture(scope="module")
def client(serve_cluster):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=f"{serve_cluster.base_url}/inspect/api", timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):  # type: ignore[no-untyped-def]
    return make_dataset(tmp_path_factory.mktemp("textures"), normal=20, anomalous=6, size=128)


@pytest.fixture(scope="module")
def trained(client, dataset):  # type: ignore[no-untyped-def]
    """A project with media and masks, and a PatchCore model trained through the API."""
    project = client.post("/projects", json={"name": f"fabric-{uuid.uuid4().hex[:6]}"}).json()
    pid = project["id"]
    for label in ("normal", "anomalous"):
        samples = [s for s in dataset if s.label == label]
        files = [("files", (s.path.name, s.path.read_bytes(), "image/png")) for s in samples]
        r = client.post(f"/projects/{pid}/media", files=files, data={"label": label})
        assert r.status_code == 201 and r.json()["uploaded"] == len(samples), r.text
        if label == "anomalous":
            by_name = {s.path.name: s for s in samples}
            for item in r.json()["items"]:
                mask = by_name[item["filename"]].mask.read_bytes()
                m = client.put(f"/media/{item['id']}/mask", files={"file": ("m.png", mask)})
                assert m.status_code == 200, m.text
    r = client.post(
        f"/projects/{pid}/train",
        json={
            "model_name": "PatchCore v1",
            "architecture": "patchcore",
            "parameters": {"image_size": 128, "coreset_sampling_ratio": 0.1},
        },
    )
    assert r.status_code == 202, r.text
    job, seen = wait_job(client, r.json()["job_id"])
    assert job["status"] == "completed", job
    return {"project": project, "job": job, "seen": seen, "model_id": r.json()["model_id"]}


def test_training_reports_progress_and_metrics(client, trained) -> None:  # type: ignore[no-untyped-def]
    job, seen = trained["job"], trained["seen"]
    assert job["progress"] == 1.0 and job["type"] == "training"
    progress = [p for status, p, _ in seen if status == "running"]
    assert progress == sorted(progress)  # never goes backwards
    assert any(0 < p < 1 for p in progress), seen
    assert any("epoch" in m for _, _, m in seen), seen
    model = client.get(f"/models/{trained['model_id']}").json()
    assert model["status"] == "ready" and model["architecture"] == "patchcore"
    assert model["metrics"]["image_auroc"] >= 0.9, model["metrics"]
    assert model["metrics"]["pixel_auroc"] >= 0.9, model["metrics"]  # masks were uploaded
    listed = client.get(f"/projects/{trained['project']['id']}/models").json()
    assert [m["id"] for m in listed] == [model["id"]]


def test_export_formats_load_in_their_runtimes(client, trained, dataset, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort
    import openvino as ov

    rgb = cv2.cvtColor(cv2.imread(str(dataset[-1].path)), cv2.COLOR_BGR2RGB)
    x = (rgb.astype(np.float32) / 255).transpose(2, 0, 1)[None]
    scores = {}
    for fmt, main in (("openvino", "model.xml"), ("onnx", "model.onnx"), ("pytorch", "model.pt")):
        r = client.get(f"/models/{trained['model_id']}/export", params={"format": fmt})
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
        assert f"-{fmt}.zip" in r.headers["content-disposition"]
        folder = tmp_path / fmt
        zipfile.ZipFile(io.BytesIO(r.content)).extractall(folder)
        assert (folder / main).is_file(), sorted(p.name for p in folder.iterdir())
        if fmt == "openvino":
            compiled = ov.Core().compile_model(
                str(folder / main), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
            )
            out = compiled(x)
            scores[fmt] = float(np.ravel(out[compiled.output("pred_score")])[0])
        elif fmt == "onnx":
            session = ort.InferenceSession(str(folder / main), providers=["CPUExecutionProvider"])
            names = [o.name for o in session.get_outputs()]
            out = dict(zip(names, session.run(None, {"input": x}), strict=True))
            scores[fmt] = float(np.ravel(out["pred_score"])[0])
    assert scores["openvino"] == pytest.approx(scores["onnx"], abs=1e-3)
    r = client.get(f"/models/{trained['model_id']}/export", params={"format": "tflite"})
    assert r.status_code == 422


def test_predict_through_the_multiplexed_deployment(client, trained, dataset) -> None:  # type: ignore[no-untyped-def]
    import base64

    from PIL import Image

    normal = next(s for s in dataset if s.label == "normal")
    defect = next(s for s in dataset if s.label == "anomalous")
    out = {}
    for sample in (normal, defect):
        r = client.post(
            f"/models/{trained['model_id']}/predict",
            files={"file": (sample.path.name, sample.path.read_bytes())},
        )
        assert r.status_code == 200, r.text
        out[sample.label] = r.json()
    assert out["anomalous"]["score"] > out["normal"]["score"]
    assert out["anomalous"]["label"] == "anomalous"
    heat = Image.open(io.BytesIO(base64.b64decode(out["anomalous"]["anomaly_map"])))
    assert heat.format == "PNG" and heat.size == (128, 128)

    r = client.post(f"/models/{trained['model_id']}/predict", files={"file": ("x", b"%PDF-1.4")})
    assert r.status_code == 400, r.text
    r = client.post("/models/nope/predict", files={"file": ("a.png", normal.path.read_bytes())})
    assert r.status_code == 404


def write_video(path: Path, dataset, frames: int = 24) -> Path:  # type: ignore[no-untyped-def]
    """An mp4 alternating normal textures with a defect every sixth frame."""
    normals = [s for s in dataset if s.label == "normal"]
    defects = [s for s in dataset if s.label == "anomalous"]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 128))
    for n in range(frames):
        pool = defects if n % 6 == 5 else normals
        writer.write(cv2.imread(str(pool[n % len(pool)].path)))
    writer.release()
    return path


@pytest.fixture
def videos(serve_cluster) -> Path:  # type: ignore[no-untyped-def]
    """A folder video_file sources may read: under the cluster's default video root."""
    path = serve_cluster.home / "inspect" / "videos" / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    return path


@pytest.fixture
def outputs(serve_cluster) -> Path:  # type: ignore[no-untyped-def]
    """A folder filesystem sinks may write: under the cluster's default output root."""
    return serve_cluster.home / "inspect" / "output" / uuid.uuid4().hex[:8]


def make_pipeline(client, trained, source: dict, sink: dict | None, config: dict) -> str:  # type: ignore[no-untyped-def, type-arg]
    pid = trained["project"]["id"]
    tag = uuid.uuid4().hex[:6]
    src = client.post(f"/projects/{pid}/sources", json={**source, "name": f"src-{tag}"})
    assert src.status_code == 201, src.text
    body = {"name": f"p-{tag}", "model_id": trained["model_id"], "source_id": src.json()["id"]}
    if sink is not None:
        snk = client.post(f"/projects/{pid}/sinks", json={**sink, "name": f"sink-{tag}"})
        assert snk.status_code == 201, snk.text
        body["sink_id"] = snk.json()["id"]
    r = client.post(f"/projects/{pid}/pipelines", json={**body, "config": config})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_pipeline_video_file_to_filesystem(client, trained, dataset, videos, outputs) -> None:  # type: ignore[no-untyped-def]
    video = write_video(videos / "line.mp4", dataset)
    out_dir = outputs / "alerts"
    pipeline_id = make_pipeline(
        client,
        trained,
        {"type": "video_file", "config": {"path": str(video), "loop": False}},
        {"type": "filesystem", "config": {"output_dir": str(out_dir), "save_images": True}},
        {"fps": 30},
    )
    r = client.post("/active-pipelines", json={"pipeline_id": pipeline_id})
    assert r.status_code == 201, r.text
    assert r.json()["status"] in ("starting", "running")
    active = wait_active(
        client, r.json()["id"], lambda a: a["status"] not in ("starting", "running")
    )
    assert active["status"] == "stopped", active  # the end of a non-looping file
    metrics = active["metrics"]
    assert metrics["frames_processed"] == 24
    assert 1 <= metrics["anomalies_detected"] <= 12, metrics
    assert metrics["avg_inference_time_ms"] > 0
    events = sorted(out_dir.glob("*.json"))
    assert len(events) == metrics["anomalies_detected"]
    first = json.loads(events[0].read_text())
    assert first["label"] == "anomalous" and first["score"] >= first["threshold"]
    assert len(list(out_dir.glob("*.png")) + list(out_dir.glob("*.jpg"))) == len(events)
    # The finished run is no longer listed as active.
    assert r.json()["id"] not in [a["id"] for a in client.get("/active-pipelines").json()]


def test_pipeline_to_mqtt_with_capture_and_webrtc(client, trained, dataset, videos) -> None:  # type: ignore[no-untyped-def]
    import paho.mqtt.client as mqtt

    topic = f"visionserve/test/{uuid.uuid4().hex[:8]}"
    received: list[dict] = []  # type: ignore[type-arg]
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: received.append(json.loads(m.payload))
    try:
        sub.connect("127.0.0.1", 1883)
    except OSError as exc:
        pytest.skip(f"no MQTT broker on 127.0.0.1:1883: {exc}")
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        video = write_video(videos / "loop.mp4", dataset)
        pipeline_id = make_pipeline(
            client,
            trained,
            {"type": "video_file", "config": {"path": str(video), "loop": True}},
            {"type": "mqtt", "config": {"broker": "mqtt://127.0.0.1:1883", "topic": topic}},
            {"fps": 10},
        )
        active_id = client.post("/active-pipelines", json={"pipeline_id": pipeline_id}).json()["id"]
        running = wait_active(
            client, active_id, lambda a: a["metrics"]["frames_processed"] >= 12, timeout_s=60
        )
        assert running["status"] == "running"
        assert active_id in [a["id"] for a in client.get("/active-pipelines").json()]
        deadline = time.time() + 20
        while not received and time.time() < deadline:
            time.sleep(0.2)
        assert received and received[0]["event"] == "anomaly.detected"
        assert received[0]["active_pipeline_id"] == active_id

        r = client.post(f"/active-pipelines/{active_id}/capture")
        assert r.status_code == 201, r.text
        capture = r.json()
        assert capture["anomaly_score"] >= 0 and capture["image_url"].endswith(".png")
        img = client.get(capture["image_url"])
        assert img.status_code == 200 and img.content[:8] == b"\x89PNG\r\n\x1a\n"

        frames = asyncio.run(receive_webrtc_frames(client, active_id, count=3))
        assert len(frames) == 3 and all(f.shape[:2] == (128, 128) for f in frames)

        # A model used by a running pipeline cannot be deleted.
        r = client.delete(f"/models/{trained['model_id']}")
        assert r.status_code == 409, r.text

        assert client.delete(f"/active-pipelines/{active_id}").status_code == 204
        stopped = client.get(f"/active-pipelines/{active_id}").json()
        assert stopped["status"] == "stopped" and stopped["metrics"]["frames_processed"] >= 12
    finally:
        sub.loop_stop()
        sub.disconnect()


async def receive_webrtc_frames(client: httpx.Client, active_id: str, count: int) -> list:  # type: ignore[type-arg]
    from aiortc import RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    got: asyncio.Future = asyncio.get_running_loop().create_future()  # type: ignore[type-arg]
    tasks = []

    @pc.on("track")
    def on_track(track) -> None:  # type: ignore[no-untyped-def]
        async def pull() -> None:
            frames = []
            while len(frames) < count:
                frame = await track.recv()
                frames.append(frame.to_ndarray(format="rgb24"))
            got.set_result(frames)

        tasks.append(asyncio.ensure_future(pull()))

    await pc.setLocalDescription(await pc.createOffer())
    r = await asyncio.to_thread(
        client.post,
        "/webrtc/offer",
        json={"pipeline_id": active_id, "sdp": pc.localDescription.sdp, "type": "offer"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "answer"
    await pc.setRemoteDescription(RTCSessionDescription(sdp=r.json()["sdp"], type="answer"))
    try:
        return await asyncio.wait_for(got, 30)
    finally:
        await pc.close()


def test_source_that_cannot_open_reports_error(client, trained, videos) -> None:  # type: ignore[no-untyped-def]
    pipeline_id = make_pipeline(
        client,
        trained,
        {"type": "video_file", "config": {"path": str(videos / "missing.mp4")}},
        None,
        {},
    )
    r = client.post("/active-pipelines", json={"pipeline_id": pipeline_id})
    assert r.status_code == 201, r.text
    active = wait_active(client, r.json()["id"], lambda a: a["status"] == "error", timeout_s=30)
    assert "missing.mp4" in active["error"]
    # The cluster is fine: the API still answers and the model still predicts.
    assert client.get("/active-pipelines").status_code == 200


def test_cancel_stops_a_running_training(client, trained) -> None:  # type: ignore[no-untyped-def]
    pid = trained["project"]["id"]
    r = client.post(
        f"/projects/{pid}/train",
        json={
            "model_name": "long STFPM",
            "architecture": "stfpm",
            "parameters": {"image_size": 128, "max_epochs": 500},
        },
    )
    assert r.status_code == 202, r.text
    job_id, model_id = r.json()["job_id"], r.json()["model_id"]
    deadline = time.time() + 180
    while time.time() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] == "running" and job["metrics"].get("epoch", -1) >= 1:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"training never got going: {job}")
    assert "loss" in job["metrics"], job  # STFPM has a loss; memory-bank models do not
    assert training_processes(), "the training task should be running in a Ray worker"
    assert client.delete(f"/jobs/{job_id}").status_code == 204
    job, _ = wait_job(client, job_id, timeout_s=60)
    assert job["status"] == "cancelled"
    model = client.get(f"/models/{model_id}").json()
    assert model["status"] == "failed" and "cancelled" in model["error"]
    # The run is gone, not merely forgotten: its worker process has exited.
    deadline = time.time() + 20
    while training_processes() and time.time() < deadline:
        time.sleep(0.5)
    assert training_processes() == []


def training_processes() -> list[int]:
    """Ray workers running the training task (Ray titles them ``ray::train_task``)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if cmdline.startswith("ray::train_task"):
            found.append(proc.info["pid"])
    return found


def test_a_failed_training_says_why(client, serve_cluster, dataset) -> None:  # type: ignore[no-untyped-def]
    project = client.post("/projects", json={"name": f"broken-{uuid.uuid4().hex[:6]}"}).json()
    normals = [s for s in dataset if s.label == "normal"][:3]
    files = [("files", (s.path.name, s.path.read_bytes(), "image/png")) for s in normals]
    items = client.post(
        f"/projects/{project['id']}/media", files=files, data={"label": "normal"}
    ).json()["items"]
    # An image lost from storage behind the API's back (a wiped disk, a bucket policy).
    lost = serve_cluster.home / "blobs" / f"inspect/projects/{project['id']}/media/{items[0]['id']}"
    for path in lost.glob("image.*"):
        path.unlink()
    r = client.post(
        f"/projects/{project['id']}/train",
        json={"model_name": "m", "architecture": "padim", "parameters": {"image_size": 64}},
    )
    job, _ = wait_job(client, r.json()["job_id"], timeout_s=120)
    assert job["status"] == "failed"
    assert job["error"].startswith("Training failed:") and items[0]["id"] in job["error"], job
    model = client.get(f"/models/{r.json()['model_id']}").json()
    assert model["status"] == "failed" and model["error"] == job["error"]


def test_deleting_a_project_mid_training_leaves_no_files(client, serve_cluster, dataset) -> None:  # type: ignore[no-untyped-def]
    project = client.post("/projects", json={"name": f"gone-{uuid.uuid4().hex[:6]}"}).json()
    normals = [s for s in dataset if s.label == "normal"][:4]
    files = [("files", (s.path.name, s.path.read_bytes(), "image/png")) for s in normals]
    client.post(f"/projects/{project['id']}/media", files=files, data={"label": "normal"})
    r = client.post(
        f"/projects/{project['id']}/train",
        json={"model_name": "m", "architecture": "padim", "parameters": {"image_size": 64}},
    )
    job_id = r.json()["job_id"]
    deadline = time.time() + 120
    while client.get(f"/jobs/{job_id}").json()["status"] == "pending" and time.time() < deadline:
        time.sleep(0.2)
    assert client.delete(f"/projects/{project['id']}").status_code == 204
    from visionserve.settings import JobSettings
    from visionserve.store.queue import JobQueue

    queue = JobQueue(serve_cluster.database_url, JobSettings())
    while queue.get(job_id).status not in ("completed", "failed") and time.time() < deadline:
        time.sleep(0.5)
    assert queue.get(job_id).status == "completed"
    assert queue.get(job_id).result["skipped"] == "the model was deleted"
    assert not (serve_cluster.home / "blobs" / f"inspect/projects/{project['id']}").exists()
