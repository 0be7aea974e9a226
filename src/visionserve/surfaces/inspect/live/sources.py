"""Frame sources for live pipelines: video files, local webcams and IP cameras.

Every source is an OpenCV ``VideoCapture`` behind :class:`FrameSource`; frames come
out as RGB ``uint8`` arrays. Reads block (OpenCV has no async API), so callers run
:meth:`FrameSource.read` in a worker thread; a lock keeps ``close()`` from releasing
the capture under a read in flight (that crashes inside FFmpeg).
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from visionserve.errors import Conflict, Unprocessable
from visionserve.surfaces.inspect.confinement import IoPolicy
from visionserve.surfaces.inspect.live.config import parse_config
from visionserve.surfaces.inspect.schemas import IpCameraConfig, VideoFileConfig, WebcamConfig

log = logging.getLogger(__name__)

# Where list_cameras looks; module constants so tests can point them at a fake tree.
DEV_DIR = Path("/dev")
SYSFS_V4L = Path("/sys/class/video4linux")
MAX_PLAUSIBLE_FPS = 240.0


class SourceError(Conflict):
    """A source that cannot be opened, or a live source that stopped delivering frames.

    409, not 422: the source's config already passed validation when it was created;
    what fails is the state of the world (camera unplugged or busy, stream down, file
    moved), which is "operation not allowed now" in the contract's terms, and the same
    request may succeed once the device is back, hence ``retryable``.
    """

    code = "source_unavailable"
    retryable = True


@runtime_checkable
class FrameSource(Protocol):
    """What the runner reads from; implement it to feed frames from elsewhere.

    A source may also set ``live = True`` (a camera): the runner then reads it in a
    thread of its own and infers on the newest frame, dropping the rest.
    """

    fps: float | None

    def read(self) -> np.ndarray | None:
        """The next RGB ``uint8`` frame, or None at the end of a non-looping file."""
        ...

    def close(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


def redact_url(url: str) -> str:
    """``url`` with any password replaced, for logs, errors and API responses."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def to_rgb(frame: np.ndarray) -> np.ndarray:
    """OpenCV's BGR (or gray/BGRA) frame as contiguous RGB ``uint8``."""
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


class CaptureSource:
    """A :class:`FrameSource` over ``cv2.VideoCapture``.

    Args:
        opener: Makes an opened capture (called again to reopen a file that won't rewind).
        info: What :meth:`describe` reports besides size and fps (no secrets).
        live: A camera: a failed read is an error, not the end of the stream.
        loop: A file that rewinds at its end instead of ending.
    """

    def __init__(
        self,
        opener: Callable[[], cv2.VideoCapture],
        *,
        info: dict[str, Any],
        live: bool,
        loop: bool = False,
    ) -> None:
        self._opener = opener
        self._info = info
        self.live = live
        self._loop = loop
        self._lock = threading.Lock()
        self._cap: cv2.VideoCapture | None = opener()
        self.frames_read = 0
        self.fps = _valid_fps(self._cap.get(cv2.CAP_PROP_FPS))
        # Kept here so describe() never waits on the lock behind a slow camera read.
        self._size = (
            int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or None,
            int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or None,
        )

    @property
    def label(self) -> str:
        return str(self._info.get("url") or self._info.get("path") or self._info)

    def read(self) -> np.ndarray | None:
        with self._lock:
            if self._cap is None:
                raise SourceError(f"{self.label}: source is closed")
            ok, frame = self._cap.read()
            if ok:
                return self._got(frame)
            if self.live:
                raise SourceError(f"{self.label}: camera stopped delivering frames")
            if not self._loop:
                return None
            return self._rewind_and_read()

    def _rewind_and_read(self) -> np.ndarray:
        assert self._cap is not None
        # Some containers refuse to seek; reopening the file rewinds them all the same.
        if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            self._cap.release()
            self._cap = self._opener()
        ok, frame = self._cap.read()
        if not ok:
            # Without this a file with no decodable frame would spin forever.
            raise SourceError(f"{self.label}: video file has no readable frames")
        return self._got(frame)

    def _got(self, frame: np.ndarray) -> np.ndarray:
        self.frames_read += 1
        self._size = (frame.shape[1], frame.shape[0])
        return to_rgb(frame)

    def close(self) -> None:
        with self._lock:
            if self._cap is not None:
                self._cap.release()
                self._cap = None

    def describe(self) -> dict[str, Any]:
        width, height = self._size
        return {**self._info, "fps": self.fps, "width": width, "height": height}


def open_source(
    type: str,
    config: dict[str, Any],
    *,
    open_timeout_s: float = 10.0,
    read_timeout_s: float = 10.0,
    policy: IoPolicy | None = None,
) -> CaptureSource:
    """Open a source as configured through the inspect API (blocking; run it in a thread).

    Args:
        type: ``video_file``, ``webcam`` or ``ip_camera``.
        config: The source's stored config (see ``visionserve.surfaces.inspect.schemas``).
        open_timeout_s: How long an IP camera may take to connect.
        read_timeout_s: How long an IP camera may go without a frame before a read fails.
        policy: Where files may be read and cameras reached, checked right before the
            file is opened or the camera connected. Whatever runs a config a client sent
            passes one; None (tests, trusted tools) reads any path and connects anywhere.

    Raises:
        Unprocessable: Unknown type or a config the schema refuses.
        DestinationRefused: The policy refuses the file or the camera's address.
        SourceError: The file, device or stream cannot be opened.
    """
    if type == "video_file":
        return _open_video_file(parse_config(VideoFileConfig, config, "source"), policy)
    if type == "webcam":
        return _open_webcam(parse_config(WebcamConfig, config, "source"))
    if type == "ip_camera":
        cam = parse_config(IpCameraConfig, config, "source")
        if policy is not None and policy.camera(cam.url) is None:
            raise SourceError(f"cannot resolve the host of IP camera {redact_url(cam.url)}")
        return _open_ip_camera(cam, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s)
    raise Unprocessable(
        f"unknown source type {type!r}; valid: ip_camera, video_file, webcam",
        code="invalid_source_config",
    )


def _open_video_file(cfg: VideoFileConfig, policy: IoPolicy | None) -> CaptureSource:
    # Resolved (symlinks too) and checked now; FFmpeg then opens the checked path.
    path = policy.video_path(cfg.path) if policy else Path(cfg.path).expanduser().resolve()
    if not path.is_file():
        raise SourceError(f"video file not found: {cfg.path}")
    # An absolute path keeps FFmpeg from reading a "proto:" prefix as a protocol.
    target = str(path)

    def opener() -> cv2.VideoCapture:
        cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot decode video file: {cfg.path}")
        return cap

    return CaptureSource(
        opener,
        info={"type": "video_file", "path": cfg.path, "loop": cfg.loop},
        live=False,
        loop=cfg.loop,
    )


def _open_webcam(cfg: WebcamConfig) -> CaptureSource:
    index = cfg.device_index
    linux = sys.platform.startswith("linux")
    if linux and not (DEV_DIR / f"video{index}").exists():
        raise SourceError(f"no webcam at device index {index} (/dev/video{index} is missing)")

    def opener() -> cv2.VideoCapture:
        cap = cv2.VideoCapture(index, cv2.CAP_V4L2 if linux else cv2.CAP_ANY)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open webcam {index} (busy, or not a capture device)")
        return cap

    return CaptureSource(opener, info={"type": "webcam", "device_index": index}, live=True)


def _open_ip_camera(
    cfg: IpCameraConfig, *, open_timeout_s: float, read_timeout_s: float
) -> CaptureSource:
    shown = redact_url(cfg.url)
    # Without both timeouts FFmpeg waits forever on a camera that accepts but never answers.
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(read_timeout_s * 1000),
    ]

    def opener() -> cv2.VideoCapture:
        cap = cv2.VideoCapture(cfg.url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"cannot open IP camera stream {shown} (unreachable, refused or timed out "
                f"after {open_timeout_s:g} s)"
            )
        return cap

    return CaptureSource(opener, info={"type": "ip_camera", "url": shown}, live=True)


def _valid_fps(value: float) -> float | None:
    # Streams and some files report 0, NaN or 90000 (a timebase) when fps is unknown.
    return value if math.isfinite(value) and 0 < value <= MAX_PLAUSIBLE_FPS else None


def list_cameras(max_index: int = 8) -> list[dict[str, Any]]:
    """Local V4L2 capture devices, from ``/dev`` and sysfs without opening any.

    Opening a device to probe it can block for seconds on a busy or broken camera, so
    only names are read. Each USB camera also exposes a metadata node (sysfs
    ``index`` 1), which is skipped. Returns ``[]`` off Linux.
    """
    if not sys.platform.startswith("linux"):
        return []
    cameras = []
    for dev in sorted(DEV_DIR.glob("video*")):
        suffix = dev.name.removeprefix("video")
        if not suffix.isdigit() or int(suffix) >= max_index:
            continue
        sysfs = SYSFS_V4L / dev.name
        if _read_text(sysfs / "index") not in (None, "0"):
            continue
        name = _read_text(sysfs / "name") or dev.name
        cameras.append({"index": int(suffix), "name": name, "type": "webcam"})
    return sorted(cameras, key=lambda c: c["index"])


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
