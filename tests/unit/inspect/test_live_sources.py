"""Live frame sources: video files (loop or not), webcams, IP cameras and camera listing."""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from visionserve.errors import Unprocessable
from visionserve.surfaces.inspect.live import sources
from visionserve.surfaces.inspect.live.sources import (
    SourceError,
    list_cameras,
    open_source,
    redact_url,
)


def write_video(path: Path, frames: int = 12, fps: float = 10.0, fourcc: str = "mp4v") -> Path:
    """128×128 frames, red in frame i at 10 + 20·i (so order and channels can be checked)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (128, 128))
    assert writer.isOpened()
    for i in range(frames):
        bgr = np.zeros((128, 128, 3), np.uint8)
        bgr[..., 2] = 10 + 20 * i
        writer.write(bgr)
    writer.release()
    return path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.mp4")


def red(frame: np.ndarray) -> float:
    return float(frame[..., 0].mean())


def test_video_file_reads_rgb_frames_then_ends(video: Path) -> None:
    src = open_source("video_file", {"path": str(video)})
    try:
        assert src.fps == pytest.approx(10.0)
        assert not src.live
        frames = []
        while (frame := src.read()) is not None:
            frames.append(frame)
        assert len(frames) == 12
        assert all(f.shape == (128, 128, 3) and f.dtype == np.uint8 for f in frames)
        # RGB, not OpenCV's BGR: the red we wrote is channel 0; frames come in order.
        assert red(frames[0]) == pytest.approx(10, abs=4)
        assert red(frames[-1]) == pytest.approx(230, abs=4)
        assert float(frames[5][..., 2].mean()) < 5
        assert src.read() is None  # stays ended
        info = src.describe()
        assert info | {"fps": 10.0} == {
            "type": "video_file",
            "path": str(video),
            "loop": False,
            "fps": 10.0,
            "width": 128,
            "height": 128,
        }
    finally:
        src.close()


def test_looping_video_file_rewinds(video: Path) -> None:
    src = open_source("video_file", {"path": str(video), "loop": True})
    try:
        frames = [src.read() for _ in range(30)]
        assert all(f is not None for f in frames)
        assert red(frames[12]) == pytest.approx(red(frames[0]), abs=4)  # back at the start
        assert red(frames[29]) == pytest.approx(red(frames[5]), abs=4)
    finally:
        src.close()


def test_closed_source_refuses_reads(video: Path) -> None:
    src = open_source("video_file", {"path": str(video)})
    src.close()
    src.close()  # idempotent
    with pytest.raises(SourceError, match="closed"):
        src.read()


def test_missing_and_undecodable_files_are_source_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="video file not found") as missing:
        open_source("video_file", {"path": str(tmp_path / "nope.mp4")})
    assert (missing.value.status, missing.value.code) == (409, "source_unavailable")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(SourceError, match="cannot decode"):
        open_source("video_file", {"path": str(junk)})


class FakeCapture:
    """Just enough of cv2.VideoCapture: a fixed list of frames, optionally unseekable."""

    def __init__(self, frames: int, seekable: bool = True) -> None:
        self.frames, self.seekable, self.pos, self.released = frames, seekable, 0, False

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.pos >= self.frames:
            return False, None
        self.pos += 1
        return True, np.full((4, 4, 3), self.pos, np.uint8)

    def set(self, prop: int, value: float) -> bool:
        if not self.seekable:
            return False
        self.pos = int(value)
        return True

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


def test_looping_file_without_frames_does_not_spin() -> None:
    src = sources.CaptureSource(lambda: FakeCapture(0), info={}, live=False, loop=True)
    assert src.fps is None  # 0 reported: unknown
    with pytest.raises(SourceError, match="no readable frames"):
        src.read()


def test_unseekable_looping_file_is_reopened() -> None:
    opened: list[FakeCapture] = []

    def opener() -> FakeCapture:
        opened.append(FakeCapture(2, seekable=False))
        return opened[-1]

    src = sources.CaptureSource(opener, info={}, live=False, loop=True)
    values = [int(src.read()[0, 0, 0]) for _ in range(5)]  # type: ignore[index]
    assert values == [1, 2, 1, 2, 1]
    assert len(opened) == 3 and opened[0].released


@pytest.mark.parametrize(
    ("type_", "config", "match"),
    [
        ("video_file", {}, "path"),
        ("video_file", {"path": "/x.mp4", "speed": 2}, "speed"),
        ("webcam", {"device_index": -1}, "device_index"),
        ("ip_camera", {"url": "ftp://cam/x"}, "url"),
        ("telescope", {}, "unknown source type"),
    ],
)
def test_bad_config_is_unprocessable(type_: str, config: dict, match: str) -> None:
    with pytest.raises(Unprocessable, match=match) as err:
        open_source(type_, config)
    assert (err.value.status, err.value.code) == (422, "invalid_source_config")


def test_missing_webcam_is_a_source_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "DEV_DIR", tmp_path)
    with pytest.raises(SourceError, match="no webcam at device index 3"):
        open_source("webcam", {"device_index": 3})


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts TCP connections and never answers: a camera that hangs."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                held.append(srv.accept()[0])
        except OSError:  # the listening socket was closed: done
            return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    srv.close()
    for conn in held:
        conn.close()


def test_hanging_ip_camera_times_out_without_leaking_password(silent_server: int) -> None:
    url = f"rtsp://admin:hunter2@127.0.0.1:{silent_server}/stream"
    started = time.monotonic()
    with pytest.raises(SourceError) as err:
        open_source("ip_camera", {"url": url}, open_timeout_s=0.5, read_timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert "hunter2" not in err.value.message
    assert f"rtsp://admin:***@127.0.0.1:{silent_server}/stream" in err.value.message


def test_refused_ip_camera_fails_fast() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceError, match="cannot open IP camera"):
        open_source("ip_camera", {"url": f"rtsp://127.0.0.1:{port}/x"}, open_timeout_s=1)


@pytest.fixture
def http_camera(tmp_path: Path) -> Iterator[str]:
    """An MJPEG stream over HTTP (an AVI served as one response), ending after 8 frames."""
    write_video(tmp_path / "cam.avi", frames=8, fourcc="MJPG")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cam.avi"
    server.shutdown()
    server.server_close()


def test_ip_camera_streams_then_a_dead_stream_is_a_source_error(http_camera: str) -> None:
    src = open_source("ip_camera", {"url": http_camera}, open_timeout_s=2, read_timeout_s=2)
    try:
        assert src.live
        frames = [src.read() for _ in range(8)]
        assert all(f is not None and f.shape == (128, 128, 3) for f in frames)
        # A camera whose stream ends failed; it is not a file that ended.
        with pytest.raises(SourceError, match="stopped delivering frames"):
            src.read()
    finally:
        src.close()


def test_redact_url() -> None:
    assert redact_url("rtsp://u:p@cam:554/s?x=1") == "rtsp://u:***@cam:554/s?x=1"
    assert redact_url("rtsp://cam/s") == "rtsp://cam/s"


def test_list_cameras_reads_dev_and_sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev, sysfs = tmp_path / "dev", tmp_path / "sys"
    for name, index, label in [
        ("video0", "0", "USB Camera"),
        ("video1", "1", "USB Camera"),  # the same camera's metadata node
        ("video2", None, None),  # no sysfs entry
        ("video12", "0", "Far"),  # beyond max_index
    ]:
        (dev / name).parent.mkdir(exist_ok=True)
        (dev / name).touch()
        if index is not None:
            (sysfs / name).mkdir(parents=True)
            (sysfs / name / "index").write_text(index + "\n")
            (sysfs / name / "name").write_text(f"{label}\n")
    (dev / "video-notes").touch()
    monkeypatch.setattr(sources, "DEV_DIR", dev)
    monkeypatch.setattr(sources, "SYSFS_V4L", sysfs)
    assert list_cameras(max_index=8) == [
        {"index": 0, "name": "USB Camera", "type": "webcam"},
        {"index": 2, "name": "video2", "type": "webcam"},
    ]


def test_list_cameras_on_this_machine_is_quick() -> None:
    started = time.monotonic()
    cameras = list_cameras()
    assert isinstance(cameras, list)
    assert time.monotonic() - started < 1
