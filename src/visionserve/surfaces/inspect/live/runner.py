"""The loop of one active pipeline: read a frame, infer, keep the result, tell the sinks.

Not Ray-specific: the inspect deployment owns a runner inside an actor and awaits
:meth:`PipelineRunner.run` as a task. Everything that blocks (opening and reading
the source, sinks, JPEG encoding) runs in threads so the event loop stays free for
WebRTC and status calls.

Files are read frame by frame and paced, so every frame is inferred. Live cameras
are read continuously by a thread of their own that keeps only the newest frame:
inference slower than the camera then skips frames instead of falling further and
further behind a backlog in the camera's buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import cv2
import numpy as np

from visionserve.errors import VisionServeError
from visionserve.surfaces.inspect.live.sinks import ReportsFailures, Sink, anomaly_event
from visionserve.surfaces.inspect.live.sources import FrameSource

log = logging.getLogger(__name__)

Status = Literal["starting", "running", "stopped", "error"]
EmitMode = Literal["anomalies", "all"]
Predict = Callable[[np.ndarray], Awaitable[dict[str, Any]]]

FPS_WINDOW = 30  # frames the measured fps is averaged over
MAX_PREDICT_FAILURES = 5  # in a row, before the pipeline gives up


class LatestFrame(NamedTuple):
    rgb: np.ndarray
    score: float
    timestamp: datetime


class PipelineRunner:
    """Runs one active pipeline until its file ends, it fails or :meth:`stop` is called.

    Args:
        pipeline_id: The pipeline this run belongs to (goes into events).
        active_id: This run's id (goes into events).
        source_factory: Opens the source; called once, in a thread.
        predict: Scores one RGB frame: ``{"score", "is_anomalous", "annotated"}``.
        sinks: Where events go; closed when the run ends.
        threshold: A frame is anomalous when ``score >= threshold`` (this decides, so a
            pipeline's threshold can differ from the model's own).
        fps: Frames per second to infer at; None follows the source's own rate.
        emit: Send events for anomalous frames only, or for every frame.
        queue_size: Events waiting for slow sinks before new ones are dropped.
        drain_timeout_s: How long the end of a run waits for queued events.
        sink_poll_s: How often sinks that deliver elsewhere (webhooks, through the
            outbox) are asked for their failed deliveries.
    """

    def __init__(
        self,
        *,
        pipeline_id: str,
        active_id: str,
        source_factory: Callable[[], FrameSource],
        predict: Predict,
        sinks: list[Sink],
        threshold: float,
        fps: float | None = None,
        emit: EmitMode = "anomalies",
        queue_size: int = 64,
        drain_timeout_s: float = 10.0,
        sink_poll_s: float = 2.0,
    ) -> None:
        if fps is not None and fps <= 0:
            raise ValueError("fps must be positive")
        self.pipeline_id = pipeline_id
        self.active_id = active_id
        self.threshold = threshold
        self.emit_mode = emit
        self._source_factory = source_factory
        self._predict = predict
        self._sinks = list(sinks)
        self._fps = fps
        self._drain_timeout_s = drain_timeout_s
        self._sink_poll_s = sink_poll_s
        self._status: Status = "starting"
        self._error: str | None = None
        self._source: FrameSource | None = None
        self._started_at: datetime | None = None
        self._stopped_at: datetime | None = None
        # Metrics, updated on the event loop only.
        self._frames = 0
        self._anomalies = 0
        self._infer_s = 0.0
        self._sink_errors = 0
        self._last_sink_error: str | None = None
        self._dropped = 0
        self._predict_errors = 0
        self._predict_streak = 0
        self._frame_times: deque[float] = deque(maxlen=FPS_WINDOW)
        self._latest: LatestFrame | None = None
        self._latest_annotated: np.ndarray | None = None
        # Replaced on every frame; setting the old one wakes everyone waiting for "next".
        self._frame_event = asyncio.Event()
        self._stop = asyncio.Event()
        self._stop_watching = asyncio.Event()
        self._done = asyncio.Event()
        self._running = False
        self._queue: asyncio.Queue[tuple[dict[str, Any], np.ndarray] | None] = asyncio.Queue(
            maxsize=queue_size
        )

    # --- state ---------------------------------------------------------------------------

    def status(self) -> Status:
        return self._status

    @property
    def error(self) -> str | None:
        """Why the run failed (status ``error``), for the API."""
        return self._error

    @property
    def frame_count(self) -> int:
        """Frames processed so far; the sequence number :meth:`wait_frame` compares to."""
        return self._frames

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def metrics(self) -> dict[str, Any]:
        """Counters for the active-pipeline listing.

        ``fps`` is the measured inference rate over the last frames (0 once stopped);
        ``events_dropped`` counts events lost because sinks fell behind;
        ``sink_errors`` counts failed deliveries (a sink that raised, a webhook attempt
        the outbox could not make), ``last_sink_error`` says why the latest failed.
        """
        avg = self._infer_s / self._frames * 1000 if self._frames else 0.0
        return {
            "frames_processed": self._frames,
            "anomalies_detected": self._anomalies,
            "avg_inference_time_ms": round(avg, 2),
            "fps": round(self._measured_fps(), 2),
            "sink_errors": self._sink_errors,
            "last_sink_error": self._last_sink_error,
            "events_dropped": self._dropped,
            "inference_errors": self._predict_errors,
        }

    def info(self) -> dict[str, Any]:
        """Everything the API shows about this run, in one call (handy across an actor)."""
        source = None
        if self._source is not None:
            with contextlib.suppress(Exception):
                source = self._source.describe()
        return {
            "id": self.active_id,
            "pipeline_id": self.pipeline_id,
            "status": self._status,
            "error": self._error,
            "started_at": self._started_at,
            "stopped_at": self._stopped_at,
            "metrics": self.metrics(),
            "source": source,
        }

    def latest(self) -> LatestFrame | None:
        """The newest raw frame with its score and when it was read."""
        return self._latest

    def latest_annotated(self) -> np.ndarray | None:
        """The newest annotated frame, if predict returned one for it."""
        return self._latest_annotated

    async def wait_frame(self, after: int, timeout: float | None = None) -> int:
        """Wait until more than ``after`` frames were processed; returns the count.

        Returns early (with the count unchanged) on timeout or when the run is over,
        so a viewer never hangs on a stopped pipeline.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._frames <= after and not self._done.is_set():
                    await _first(self._frame_event, self._done)
        return self._frames

    # --- control -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run to the end; never raises for source, sink or inference failures.

        Those end in status ``error`` (with :attr:`error`) or are counted in metrics.
        """
        if self._running:
            raise RuntimeError("a PipelineRunner runs once")
        if self._done.is_set():  # stopped before it ran
            return
        self._running = True
        self._started_at = datetime.now(UTC)
        emitter = asyncio.create_task(self._emit_loop(), name=f"sinks-{self.active_id}")
        watcher = asyncio.create_task(self._watch_sinks(), name=f"sink-checks-{self.active_id}")
        try:
            self._source = await asyncio.to_thread(self._source_factory)
            if not self._stop.is_set():
                self._status = "running"
                if getattr(self._source, "live", False):
                    await self._run_live(self._source)
                else:
                    await self._run_file(self._source)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)
        finally:
            self._stop_watching.set()
            await watcher  # lets a poll in progress count what it found
            await self._finish(emitter)

    async def stop(self) -> None:
        """Stop the loop and wait until the source and sinks are closed."""
        self._stop.set()
        if self._running:
            await self._done.wait()
        elif not self._done.is_set():  # never started: nothing to wind down but sinks
            await asyncio.to_thread(self._close_sinks)
            self._status = "stopped"
            self._stopped_at = datetime.now(UTC)
            self._done.set()

    # --- the loop ------------------------------------------------------------------------

    def _interval(self, source: FrameSource) -> float:
        fps = self._fps or source.fps
        return 1.0 / fps if fps else 0.0

    async def _run_file(self, source: FrameSource) -> None:
        interval = self._interval(source)
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not self._stop.is_set():
            frame = await asyncio.to_thread(source.read)
            if frame is None:  # end of a non-looping file
                return
            await self._process(frame)
            due = await self._pace(due, interval)

    async def _run_live(self, source: FrameSource) -> None:
        interval = self._interval(source) if self._fps else 0.0  # a camera paces itself
        feed = _LiveFeed(source, asyncio.get_running_loop())
        try:
            due = asyncio.get_running_loop().time()
            seen = 0
            while not self._stop.is_set():
                got = await feed.take(after=seen, stop=self._stop)
                if got is None:
                    return
                seen, frame = got
                await self._process(frame)
                due = await self._pace(due, interval)
        finally:
            await asyncio.to_thread(feed.halt)

    async def _pace(self, due: float, interval: float) -> float:
        """Sleep until the next frame is due (or stop); returns the new due time."""
        loop = asyncio.get_running_loop()
        due += interval
        delay = due - loop.time()
        if delay <= 0:
            return loop.time()  # behind: carry on now rather than burst to catch up
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)
        return due

    async def _process(self, frame: np.ndarray) -> None:
        timestamp = datetime.now(UTC)
        started = time.perf_counter()
        try:
            result = await self._predict(frame)
            score = float(result["score"])
        except Exception as exc:
            self._predict_errors += 1
            self._predict_streak += 1
            log.warning("pipeline %s: inference failed: %s", self.active_id, exc)
            if self._predict_streak >= MAX_PREDICT_FAILURES:
                raise RuntimeError(
                    f"inference failed {self._predict_streak} times in a row: {exc}"
                ) from exc
            return  # one bad frame (or a replica restarting) must not end the run
        self._predict_streak = 0
        self._infer_s += time.perf_counter() - started
        anomalous = score >= self.threshold
        self._frames += 1
        self._anomalies += anomalous
        self._frame_times.append(time.monotonic())
        annotated = result.get("annotated")
        self._latest = LatestFrame(frame, score, timestamp)
        self._latest_annotated = annotated
        self._frame_event, wake = asyncio.Event(), self._frame_event
        wake.set()
        if anomalous or self.emit_mode == "all":
            event = anomaly_event(
                pipeline_id=self.pipeline_id,
                active_pipeline_id=self.active_id,
                frame=self._frames,
                timestamp=timestamp,
                score=score,
                is_anomalous=anomalous,
                threshold=self.threshold,
            )
            self._enqueue(event, annotated if annotated is not None else frame)

    def _enqueue(self, event: dict[str, Any], image: np.ndarray) -> None:
        try:
            self._queue.put_nowait((event, image))
        except asyncio.QueueFull:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 100 == 0:
                log.warning(
                    "pipeline %s: sinks behind, %d events dropped", self.active_id, self._dropped
                )

    async def _emit_loop(self) -> None:
        while (item := await self._queue.get()) is not None:
            errors = await asyncio.to_thread(self._deliver, *item)
            self._count_sink_errors(errors)

    def _count_sink_errors(self, errors: list[str]) -> None:
        if errors:
            self._sink_errors += len(errors)
            self._last_sink_error = errors[-1]

    async def _watch_sinks(self) -> None:
        """Poll sinks that deliver elsewhere for failures, until cancelled."""
        if not any(isinstance(s, ReportsFailures) for s in self._sinks):
            return
        while not self._stop_watching.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_watching.wait(), self._sink_poll_s)
            if not self._stop_watching.is_set():
                await self._poll_sinks()

    async def _poll_sinks(self) -> None:
        for sink in self._sinks:
            if not isinstance(sink, ReportsFailures):
                continue
            try:
                errors = await asyncio.to_thread(sink.failures)
            except Exception:
                log.warning(
                    "pipeline %s: cannot read the failures of sink %s",
                    self.active_id,
                    type(sink).__name__,
                    exc_info=True,
                )
                continue
            self._count_sink_errors(errors)

    def _deliver(self, event: dict[str, Any], image: np.ndarray) -> list[str]:
        """Send one event to every sink (worker thread); returns why each failure failed."""
        errors: list[str] = []
        encoded: bytes | None = None
        if any(getattr(s, "wants_image", False) for s in self._sinks):
            try:
                encoded = encode_jpeg(image)
            except Exception:
                log.exception("pipeline %s: cannot encode frame %s", self.active_id, event["frame"])
        for sink in self._sinks:
            try:
                sink.emit(event, encoded if getattr(sink, "wants_image", False) else None)
            except Exception as exc:
                log.warning(
                    "pipeline %s: sink %s failed: %s", self.active_id, type(sink).__name__, exc
                )
                # Our own errors say what went wrong; anything else only names its kind.
                why = exc.message if isinstance(exc, VisionServeError) else type(exc).__name__
                errors.append(f"{type(sink).__name__}: {why}")
        return errors

    def _fail(self, exc: BaseException) -> None:
        message = exc.message if isinstance(exc, VisionServeError) else f"{exc}"
        self._error = message or type(exc).__name__
        self._status = "error"
        log.warning("pipeline %s failed: %s", self.active_id, self._error)

    async def _finish(self, emitter: asyncio.Task[None]) -> None:
        """Close the source, let queued events reach the sinks, close the sinks."""
        if self._source is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._source.close)
        try:
            async with asyncio.timeout(self._drain_timeout_s):
                await self._queue.put(None)  # after the queued events: they go out first
                await emitter
        except TimeoutError:  # leaving the block cancelled the emitter
            log.warning(
                "pipeline %s: sinks did not drain in %.0f s; %d events lost",
                self.active_id,
                self._drain_timeout_s,
                self._queue.qsize(),
            )
        except Exception:
            log.exception("pipeline %s: the sink emitter failed", self.active_id)
        await self._poll_sinks()  # failures reported since the last poll
        await asyncio.to_thread(self._close_sinks)
        if self._status != "error":
            self._status = "stopped"
        self._stopped_at = datetime.now(UTC)
        self._done.set()

    def _close_sinks(self) -> None:
        for sink in self._sinks:
            try:
                sink.close()
            except Exception:
                log.exception(
                    "pipeline %s: closing sink %s failed", self.active_id, type(sink).__name__
                )

    def _measured_fps(self) -> float:
        times = self._frame_times
        if self._status != "running" or len(times) < 2 or times[-1] == times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """RGB ``uint8`` frame to JPEG bytes."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


async def _first(*events: asyncio.Event) -> None:
    """Return as soon as any of ``events`` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


class _LiveFeed:
    """Reads a live source in its own thread, keeping only the newest frame."""

    def __init__(self, source: FrameSource, loop: asyncio.AbstractEventLoop) -> None:
        self._source = source
        self._loop = loop
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._error: BaseException | None = None
        self._ended = False
        self._ready = asyncio.Event()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._read_forever, name="live-source", daemon=True)
        self._thread.start()

    def _read_forever(self) -> None:
        while not self._halt.is_set():
            try:
                frame = self._source.read()
            except BaseException as exc:
                with self._lock:
                    self._error = exc
                self._notify()
                return
            with self._lock:
                if frame is None:
                    self._ended = True
                else:
                    self._frame, self._seq = frame, self._seq + 1
            self._notify()
            if frame is None:
                return

    def _notify(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            self._loop.call_soon_threadsafe(self._ready.set)

    async def take(self, *, after: int, stop: asyncio.Event) -> tuple[int, np.ndarray] | None:
        """The newest frame past ``after`` as ``(seq, frame)``; None at end or on stop."""
        while not stop.is_set():
            with self._lock:
                if self._error is not None and self._seq <= after:
                    raise self._error
                if self._seq > after and self._frame is not None:
                    return self._seq, self._frame
                if self._ended:
                    return None
                # Cleared under the lock: a frame stored after this check sets it again.
                self._ready.clear()
            await _first(self._ready, stop)
        return None

    def halt(self) -> None:
        """Stop reading (blocking: waits out a read in progress, bounded by its timeout)."""
        self._halt.set()
        self._thread.join(timeout=15.0)
