"""The live pipeline loop: files to the end, loops until stopped, failures as status."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from visionserve.surfaces.inspect.live.runner import PipelineRunner
from visionserve.surfaces.inspect.live.sources import CaptureSource, SourceError, open_source

FRAMES = 12
# Gray levels 10, 30, ..., 230 (they decode about 3 lower); the threshold sits mid-way
# between two levels, so the last five frames are anomalous whatever the codec does.
LEVELS = [10 + 20 * i for i in range(FRAMES)]
THRESHOLD = 0.55
ANOMALOUS = sum(level / 255 >= THRESHOLD for level in LEVELS)


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "line.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 128))
    for level in LEVELS:
        writer.write(np.full((128, 128, 3), level, np.uint8))
    writer.release()
    return path


async def by_brightness(frame: np.ndarray) -> dict[str, Any]:
    """A stand-in model: brighter is more anomalous; the annotation is the negative."""
    await asyncio.sleep(0.001)
    score = float(frame.mean()) / 255
    return {"score": score, "is_anomalous": score >= THRESHOLD, "annotated": 255 - frame}


class RecordingSink:
    def __init__(self, wants_image: bool = True, delay_s: float = 0.0) -> None:
        self.wants_image = wants_image
        self.delay_s = delay_s
        self.events: list[tuple[dict[str, Any], bytes | None]] = []
        self.closed = False
        self.lock = threading.Lock()

    def emit(self, event: dict[str, Any], image: bytes | None) -> None:
        time.sleep(self.delay_s)
        with self.lock:
            self.events.append((event, image))

    def close(self) -> None:
        self.closed = True


class BrokenSink:
    wants_image = False

    def __init__(self) -> None:
        self.closed = False

    def emit(self, event: dict[str, Any], image: bytes | None) -> None:
        raise ConnectionError("receiver down")

    def close(self) -> None:
        self.closed = True


def runner_for(
    path: Path, *, loop: bool = False, sinks: list | None = None, **kwargs: Any
) -> PipelineRunner:
    options: dict[str, Any] = {"threshold": THRESHOLD, "fps": 500.0, "predict": by_brightness}
    options.update(kwargs)
    return PipelineRunner(
        pipeline_id="pipe-1",
        active_id="active-1",
        source_factory=lambda: open_source("video_file", {"path": str(path), "loop": loop}),
        sinks=sinks or [],
        **options,
    )


async def test_file_runs_to_the_end(video: Path) -> None:
    sink, broken = RecordingSink(), BrokenSink()
    statuses: list[str] = []

    async def predict(frame: np.ndarray) -> dict[str, Any]:
        statuses.append(runner.status())
        return await by_brightness(frame)

    runner = runner_for(video, sinks=[sink, broken], predict=predict)
    assert runner.status() == "starting" and runner.latest() is None
    await asyncio.wait_for(runner.run(), 10)

    assert runner.status() == "stopped" and runner.error is None
    assert set(statuses) == {"running"}
    metrics = runner.metrics()
    assert metrics["frames_processed"] == FRAMES
    assert metrics["anomalies_detected"] == ANOMALOUS == 5
    assert metrics["sink_errors"] == ANOMALOUS  # the broken sink, once per event
    assert metrics["avg_inference_time_ms"] > 0
    assert metrics["fps"] == 0.0  # not running any more
    # Only anomalies are emitted, in order, with the event shape sinks rely on.
    frames = [e["frame"] for e, _ in sink.events]
    assert frames == list(range(FRAMES - ANOMALOUS + 1, FRAMES + 1))
    first, image = sink.events[0]
    assert first.keys() == {
        "event", "pipeline_id", "active_pipeline_id", "frame", "timestamp", "score", "label",
        "threshold",
    }  # fmt: skip
    assert (first["event"], first["label"]) == ("anomaly.detected", "anomalous")
    assert first["threshold"] == THRESHOLD
    assert (first["pipeline_id"], first["active_pipeline_id"]) == ("pipe-1", "active-1")
    assert first["score"] == pytest.approx(LEVELS[FRAMES - ANOMALOUS] / 255, abs=0.02)
    # The image is the annotated frame (the negative), as JPEG.
    decoded = cv2.imdecode(np.frombuffer(image or b"", np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (128, 128, 3)
    assert decoded.mean() == pytest.approx(255 - LEVELS[FRAMES - ANOMALOUS], abs=4)
    assert sink.closed and broken.closed
    latest = runner.latest()
    assert latest is not None
    assert latest.rgb.shape == (128, 128, 3) and latest.score == pytest.approx(230 / 255, abs=0.02)
    annotated = runner.latest_annotated()
    assert annotated is not None and annotated.mean() == pytest.approx(25, abs=4)


async def test_emit_all_sends_normal_frames_too(video: Path) -> None:
    sink = RecordingSink(wants_image=False)
    runner = runner_for(video, sinks=[sink], emit="all")
    await asyncio.wait_for(runner.run(), 10)
    labels = [e["label"] for e, _ in sink.events]
    assert labels == ["normal"] * (FRAMES - ANOMALOUS) + ["anomalous"] * ANOMALOUS
    assert all(image is None for _, image in sink.events)  # nobody asked for images


async def test_looping_file_runs_until_stopped(video: Path) -> None:
    sink = RecordingSink()
    opened: list[CaptureSource] = []

    def factory() -> CaptureSource:
        opened.append(open_source("video_file", {"path": str(video), "loop": True}))
        return opened[-1]

    runner = PipelineRunner(
        pipeline_id="p", active_id="a", source_factory=factory, predict=by_brightness,
        sinks=[sink], threshold=THRESHOLD, fps=500.0,
    )  # fmt: skip
    task = asyncio.create_task(runner.run())
    count = await asyncio.wait_for(runner.wait_frame(after=2 * FRAMES), 10)
    assert count > 2 * FRAMES and runner.status() == "running"  # went round twice
    assert runner.metrics()["fps"] > 0
    await asyncio.wait_for(runner.stop(), 5)
    assert task.done() and runner.status() == "stopped"
    assert runner.metrics()["anomalies_detected"] >= 2 * ANOMALOUS
    assert sink.closed
    with pytest.raises(SourceError, match="closed"):
        opened[0].read()
    await task
    with pytest.raises(RuntimeError, match="runs once"):
        await runner.run()


async def test_missing_file_is_an_error_status(tmp_path: Path) -> None:
    sink = RecordingSink()
    runner = runner_for(tmp_path / "gone.mp4", sinks=[sink])
    await asyncio.wait_for(runner.run(), 5)
    assert runner.status() == "error"
    assert runner.error == f"video file not found: {tmp_path / 'gone.mp4'}"
    assert runner.metrics()["frames_processed"] == 0
    assert sink.closed and runner.done
    # A viewer waiting for frames is released, not left hanging.
    assert await asyncio.wait_for(runner.wait_frame(after=0), 1) == 0


async def test_paces_to_the_requested_fps(video: Path) -> None:
    runner = runner_for(video, fps=40.0)
    started = time.monotonic()
    await asyncio.wait_for(runner.run(), 10)
    assert time.monotonic() - started >= (FRAMES - 1) / 40 * 0.9


async def test_inference_failures(video: Path) -> None:
    calls = 0

    async def flaky(frame: np.ndarray) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("replica restarting")
        return await by_brightness(frame)

    runner = runner_for(video, predict=flaky)
    await asyncio.wait_for(runner.run(), 10)
    assert runner.status() == "stopped"
    assert runner.metrics()["frames_processed"] == FRAMES - 1
    assert runner.metrics()["inference_errors"] == 1

    async def dead(frame: np.ndarray) -> dict[str, Any]:
        raise RuntimeError("model gone")

    runner = runner_for(video, predict=dead)
    await asyncio.wait_for(runner.run(), 10)
    assert runner.status() == "error"
    assert runner.error == "inference failed 5 times in a row: model gone"


async def test_slow_sinks_drop_events_but_keep_the_loop_going(video: Path) -> None:
    sink = RecordingSink(wants_image=False, delay_s=0.05)
    runner = runner_for(video, sinks=[sink], emit="all", queue_size=2)
    await asyncio.wait_for(runner.run(), 10)
    metrics = runner.metrics()
    assert metrics["frames_processed"] == FRAMES
    assert metrics["events_dropped"] > 0
    # What was queued when the file ended still reached the sink before it closed.
    assert len(sink.events) + metrics["events_dropped"] == FRAMES and sink.closed


class FakeCamera:
    """A live source: a frame every 5 ms whose gray level is its number; dies after ``n``."""

    live = True
    fps = None

    def __init__(self, n: int) -> None:
        self.n, self.read_count, self.closed = n, 0, False

    def read(self) -> np.ndarray:
        time.sleep(0.005)
        if self.read_count >= self.n:
            raise SourceError("cam: camera stopped delivering frames")
        self.read_count += 1
        return np.full((8, 8, 3), self.read_count, np.uint8)

    def close(self) -> None:
        self.closed = True

    def describe(self) -> dict[str, Any]:
        return {"type": "webcam"}


async def test_live_source_skips_to_the_newest_frame_and_fails_on_a_dead_camera() -> None:
    camera = FakeCamera(n=60)
    seen: list[int] = []

    async def slow(frame: np.ndarray) -> dict[str, Any]:
        seen.append(int(frame[0, 0, 0]))
        await asyncio.sleep(0.03)  # slower than the camera
        return {"score": 0.1, "is_anomalous": False, "annotated": None}

    runner = PipelineRunner(
        pipeline_id="p", active_id="a", source_factory=lambda: camera, predict=slow, sinks=[],
        threshold=0.5, fps=None,
    )  # fmt: skip
    await asyncio.wait_for(runner.run(), 10)
    assert runner.status() == "error"
    assert runner.error == "cam: camera stopped delivering frames"
    assert camera.closed
    # Inference saw fewer frames than the camera made, always newer ones, no backlog.
    assert 2 <= len(seen) < camera.read_count
    assert seen == sorted(set(seen)) and seen[-1] > camera.read_count - 15
    assert runner.info()["source"] == {"type": "webcam"}


async def test_stop_before_run_closes_sinks() -> None:
    sink = RecordingSink()
    runner = PipelineRunner(
        pipeline_id="p", active_id="a", source_factory=lambda: FakeCamera(1),
        predict=by_brightness, sinks=[sink], threshold=0.5,
    )  # fmt: skip
    await runner.stop()
    assert runner.status() == "stopped" and sink.closed
    await asyncio.wait_for(runner.run(), 1)  # a task created before stop() just ends
    assert runner.status() == "stopped" and runner.metrics()["frames_processed"] == 0
