"""Live preview over WebRTC: a video track fed by a pipeline and the peers watching it.

One :class:`PeerHub` per active pipeline answers viewers' offers. Each viewer gets
its own :class:`FrameTrack` that sends the pipeline's newest annotated frame (the
raw frame when there is no annotation); aiortc encodes it (VP8/H.264).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from typing import Protocol

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, MediaStreamError
from aiortc.sdp import candidate_from_sdp

from visionserve.errors import BadRequest, Conflict, ServiceUnavailable
from visionserve.surfaces.inspect.live.runner import LatestFrame

log = logging.getLogger(__name__)

PLACEHOLDER_SIZE = (640, 480)  # sent until the pipeline has a frame, so the call connects


class FrameProvider(Protocol):
    """What a :class:`FrameTrack` reads; :class:`~.runner.PipelineRunner` is one."""

    @property
    def frame_count(self) -> int: ...

    async def wait_frame(self, after: int, timeout: float | None = None) -> int: ...

    def latest(self) -> LatestFrame | None: ...

    def latest_annotated(self) -> np.ndarray | None: ...


class FrameTrack(VideoStreamTrack):
    """Sends a provider's newest frame each time it has a new one.

    Timestamps follow the wall clock (90 kHz), not a fixed 30 fps, because pipelines
    run at whatever rate inference allows. With nothing new (a slow or finished
    pipeline) the last frame is repeated every ``idle_s`` to keep the stream alive.

    Args:
        provider: The pipeline (or anything with the same methods).
        max_fps: Upper bound on frames sent, whatever the pipeline's rate.
        idle_s: How often the last frame is repeated when no new one comes.
    """

    def __init__(
        self, provider: FrameProvider, *, max_fps: float = 30.0, idle_s: float = 1.0
    ) -> None:
        super().__init__()
        self._provider = provider
        self._min_gap = 1.0 / max_fps
        self._idle_s = idle_s
        self._seen = -1  # so the first recv sends whatever the pipeline has now
        self._clock0: float | None = None
        self._last_sent = 0.0
        self._last_pts = -1

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        seq = await self._provider.wait_frame(max(self._seen, 0), timeout=self._idle_s)
        fresh = seq != self._seen
        await _sleep_until(self._last_sent + (self._min_gap if fresh else self._idle_s))
        self._seen = seq
        frame = av.VideoFrame.from_ndarray(self._picture(), format="rgb24")
        frame.pts, frame.time_base = self._pts(), VIDEO_TIME_BASE
        self._last_sent = time.monotonic()
        return frame

    def _picture(self) -> np.ndarray:
        rgb = self._provider.latest_annotated()
        if rgb is None:
            latest = self._provider.latest()
            rgb = latest.rgb if latest is not None else None
        if rgb is None:
            width, height = PLACEHOLDER_SIZE
            return np.zeros((height, width, 3), np.uint8)
        # Encoders want even sizes (4:2:0 chroma); drop a last odd row/column.
        h, w = rgb.shape[:2]
        return np.ascontiguousarray(rgb[: h - h % 2, : w - w % 2, :3], dtype=np.uint8)

    def _pts(self) -> int:
        now = time.monotonic()
        if self._clock0 is None:
            self._clock0 = now
        pts = max(int((now - self._clock0) * VIDEO_CLOCK_RATE), self._last_pts + 1)
        self._last_pts = pts
        return pts


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


_UFRAG_IN_CANDIDATE = re.compile(r"\bufrag\s+(\S+)")
_UFRAG_IN_SDP = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)


class PeerHub:
    """The WebRTC viewers of one active pipeline.

    Args:
        ice_servers: STUN/TURN servers; none by default, which is enough on a LAN and
            keeps gathering fast (aiortc would otherwise ask Google's public STUN).
        gather_timeout_s: Bound on answering an offer, ICE gathering included.
        max_peers: Viewers kept; the oldest is closed to admit a new one (a reloaded
            page leaves its old peer behind until ICE notices).
    """

    def __init__(
        self,
        *,
        ice_servers: list[RTCIceServer] | None = None,
        gather_timeout_s: float = 10.0,
        max_peers: int = 8,
    ) -> None:
        self._config = RTCConfiguration(iceServers=list(ice_servers or []))
        self._gather_timeout_s = gather_timeout_s
        self._max_peers = max_peers
        self._peers: dict[RTCPeerConnection, MediaStreamTrack] = {}

    @property
    def peer_count(self) -> int:
        return len(self._peers)

    async def answer(self, offer_sdp: str, track_factory: Callable[[], MediaStreamTrack]) -> str:
        """Answer a viewer's offer with a track from ``track_factory``; returns the SDP.

        The answer carries all local ICE candidates (gathered before returning), so a
        client needs no trickle from our side.

        Raises:
            BadRequest: The offer is not valid SDP or has no video section.
            ServiceUnavailable: ICE gathering did not finish in time.
        """
        if "m=video" not in offer_sdp:
            raise BadRequest(
                "the offer has no video section; add a recvonly video transceiver",
                code="invalid_sdp",
            )
        while len(self._peers) >= self._max_peers:
            await self._drop(next(iter(self._peers)))
        pc = RTCPeerConnection(self._config)
        track = track_factory()
        self._peers[pc] = track

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._drop(pc)

        try:
            async with asyncio.timeout(self._gather_timeout_s):
                try:
                    await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
                except Exception as exc:  # aiortc's parser raises assorted types
                    raise BadRequest(f"invalid SDP offer: {exc}", code="invalid_sdp") from None
                # After the remote description, so the track rides the offer's video m-line.
                pc.addTrack(track)
                await pc.setLocalDescription(await pc.createAnswer())
        except TimeoutError:
            await self._drop(pc)
            raise ServiceUnavailable(
                f"WebRTC answer not ready in {self._gather_timeout_s:g} s (ICE gathering)"
            ) from None
        except BaseException:
            await self._drop(pc)
            raise
        return pc.localDescription.sdp

    async def add_candidate(
        self, candidate: str, sdp_mid: str | None = None, sdp_mline_index: int | None = None
    ) -> None:
        """Add a viewer's trickled ICE candidate.

        Accepts ``candidate:...``, ``a=candidate:...`` or the bare attribute value. The
        candidate goes to the peer whose offer has the same ``ufrag`` when the candidate
        names one (browsers do), else to the newest peer. An empty candidate (end of
        candidates) is accepted and ignored.

        Raises:
            BadRequest: The candidate cannot be parsed.
            Conflict: No viewer has sent an offer yet.
        """
        text = candidate.strip().removeprefix("a=").removeprefix("candidate:").strip()
        if not text:
            return
        try:
            parsed = candidate_from_sdp(text)
        except (AssertionError, ValueError, IndexError):
            raise BadRequest(
                f"invalid ICE candidate {candidate[:200]!r}: expected "
                "'candidate:<foundation> <component> <protocol> <priority> <ip> <port> "
                "typ <type> ...'",
                code="invalid_candidate",
            ) from None
        parsed.sdpMid = sdp_mid
        # Our answers have a single (video) section, so index 0 when the client sent neither.
        parsed.sdpMLineIndex = 0 if sdp_mid is None and sdp_mline_index is None else sdp_mline_index
        pc = self._peer_for(text)
        if pc is None:
            raise Conflict("no WebRTC viewer to add the candidate to; send an offer first")
        try:
            await pc.addIceCandidate(parsed)
        except ValueError as exc:
            raise BadRequest(f"invalid ICE candidate: {exc}", code="invalid_candidate") from None

    def _peer_for(self, candidate: str) -> RTCPeerConnection | None:
        live = [pc for pc in self._peers if pc.remoteDescription is not None]
        match = _UFRAG_IN_CANDIDATE.search(candidate)
        if match:
            for pc in live:
                if match.group(1) in _UFRAG_IN_SDP.findall(pc.remoteDescription.sdp):
                    return pc
        return live[-1] if live else None

    async def close_all(self) -> None:
        """Hang up on every viewer (the pipeline stopped)."""
        await asyncio.gather(*(self._drop(pc) for pc in list(self._peers)))

    async def _drop(self, pc: RTCPeerConnection) -> None:
        track = self._peers.pop(pc, None)
        if track is not None:
            track.stop()
        with contextlib.suppress(Exception):
            await pc.close()
