"""WebRTC preview: a loopback viewer receives a pipeline's frames; offers and candidates."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from visionserve.errors import BadRequest, Conflict
from visionserve.surfaces.inspect.live.runner import LatestFrame, PipelineRunner
from visionserve.surfaces.inspect.live.sources import open_source
from visionserve.surfaces.inspect.live.webrtc import FrameTrack, PeerHub

HOST_CANDIDATE = "candidate:1 1 udp 2130706431 127.0.0.1 9999 typ host"


class StillProvider:
    """A FrameProvider with fixed frames, for the track on its own."""

    def __init__(self, rgb: np.ndarray | None, annotated: np.ndarray | None = None) -> None:
        self.rgb, self.annotated = rgb, annotated
        self.frame_count = 0 if rgb is None else 1

    async def wait_frame(self, after: int, timeout: float | None = None) -> int:
        return self.frame_count

    def latest(self) -> LatestFrame | None:
        return None if self.rgb is None else LatestFrame(self.rgb, 0.1, datetime.now(UTC))

    def latest_annotated(self) -> np.ndarray | None:
        return self.annotated


async def test_track_sends_annotated_then_raw_then_placeholder() -> None:
    raw = np.full((101, 64, 3), 50, np.uint8)  # odd height: cropped for the encoder
    track = FrameTrack(StillProvider(raw, annotated=np.full((20, 30, 3), 200, np.uint8)))
    first = await track.recv()
    assert (first.width, first.height) == (30, 20)
    assert first.to_ndarray(format="rgb24").mean() == 200
    assert first.time_base == fractions.Fraction(1, 90000)

    track = FrameTrack(StillProvider(raw), idle_s=0.05)
    frames = [await track.recv() for _ in range(3)]
    assert {(f.width, f.height) for f in frames} == {(64, 100)}
    assert frames[0].to_ndarray(format="rgb24").mean() == 50
    pts = [f.pts for f in frames]
    assert pts == sorted(set(pts))  # strictly increasing
    # Nothing new: repeated at the idle cadence, ~0.05 s apart on the 90 kHz clock.
    assert pts[2] - pts[1] >= 0.04 * 90000

    placeholder = await FrameTrack(StillProvider(None)).recv()
    assert (placeholder.width, placeholder.height) == (640, 480)
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


@contextlib.asynccontextmanager
async def pipeline(tmp_path: Path) -> AsyncIterator[PipelineRunner]:
    """A running pipeline on a looping 128×128 file, annotated with the frame's negative.

    A context manager, not a fixture: the runner and the viewer must share the test's
    event loop (as they share the actor's in production).
    """
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (128, 128))
    for _ in range(10):
        writer.write(np.full((128, 128, 3), 40, np.uint8))
    writer.release()

    async def negative(frame: np.ndarray) -> dict[str, Any]:
        return {"score": 0.1, "is_anomalous": False, "annotated": 255 - frame}

    runner = PipelineRunner(
        pipeline_id="p", active_id="a", predict=negative, sinks=[], threshold=0.5, fps=30.0,
        source_factory=lambda: open_source("video_file", {"path": str(path), "loop": True}),
    )  # fmt: skip
    task = asyncio.create_task(runner.run())
    try:
        assert await runner.wait_frame(0, timeout=5) > 0
        yield runner
    finally:
        await runner.stop()
        await task


@contextlib.asynccontextmanager
async def viewers(count: int = 1) -> AsyncIterator[tuple[PeerHub, list[RTCPeerConnection]]]:
    """A hub and ``count`` viewer peers (recvonly video), all closed afterwards."""
    hub = PeerHub()
    # No STUN: the test must not reach the internet; host candidates do on loopback.
    clients = [RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(count)]
    for client in clients:
        client.addTransceiver("video", direction="recvonly")
    try:
        yield hub, clients
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        await hub.close_all()
    assert hub.peer_count == 0


async def connect(
    client: RTCPeerConnection, hub: PeerHub, runner: PipelineRunner
) -> asyncio.Future[MediaStreamTrack]:
    """Offer, answer, and a future for the track the viewer receives."""
    received: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
    client.on("track", lambda track: received.done() or received.set_result(track))
    await client.setLocalDescription(await client.createOffer())
    answer = await hub.answer(client.localDescription.sdp, lambda: FrameTrack(runner))
    assert answer.startswith("v=0") and "a=candidate:" in answer  # gathered before returning
    assert re.search(r"^a=sendonly", answer, re.MULTILINE)
    await client.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return received


async def test_viewer_receives_annotated_frames(tmp_path: Path) -> None:
    async with pipeline(tmp_path) as runner, viewers() as (hub, [client]):
        track = await asyncio.wait_for(await connect(client, hub, runner), 10)
        assert track.kind == "video" and hub.peer_count == 1
        frames = [await asyncio.wait_for(track.recv(), 10) for _ in range(3)]
        assert all((f.width, f.height) == (128, 128) for f in frames)
        # The annotated frame (negative of ~37 gray), through VP8 and back.
        assert frames[-1].to_ndarray(format="rgb24").mean() == pytest.approx(218, abs=8)


async def test_candidates(tmp_path: Path) -> None:
    async with pipeline(tmp_path) as runner, viewers() as (hub, [client]):
        with pytest.raises(Conflict, match="send an offer first"):
            await hub.add_candidate(HOST_CANDIDATE, "0", 0)
        await connect(client, hub, runner)
        bare = HOST_CANDIDATE.removeprefix("candidate:")
        for text in (HOST_CANDIDATE, bare, "a=" + HOST_CANDIDATE):
            await hub.add_candidate(text, "0", 0)
        await hub.add_candidate(HOST_CANDIDATE, None, None)  # defaults to the one m-line
        await hub.add_candidate("", None, None)  # end of candidates
        for bad in ("candidate:garbage", "candidate:1 1 udp notanumber 1.2.3.4 5 typ host"):
            with pytest.raises(BadRequest, match="invalid ICE candidate") as err:
                await hub.add_candidate(bad, "0", 0)
            assert err.value.code == "invalid_candidate"


async def test_candidate_goes_to_the_peer_with_its_ufrag(tmp_path: Path) -> None:
    async with pipeline(tmp_path) as runner, viewers(2) as (hub, [first, second]):
        await connect(first, hub, runner)
        await connect(second, hub, runner)
        ufrag = re.search(r"a=ice-ufrag:(\S+)", first.localDescription.sdp)
        assert ufrag is not None
        peers = list(hub._peers)
        assert hub._peer_for(f"{HOST_CANDIDATE} ufrag {ufrag.group(1)}") is peers[0]
        assert hub._peer_for(HOST_CANDIDATE) is peers[1]  # no ufrag: the newest viewer


@pytest.mark.parametrize(
    ("sdp", "match"),
    [
        ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "no video section"),
        ("v=0\r\nm=video garbage\r\n", "invalid SDP offer"),
    ],
)
async def test_bad_offers(sdp: str, match: str) -> None:
    hub = PeerHub()
    with pytest.raises(BadRequest, match=match) as err:
        await hub.answer(sdp, lambda: FrameTrack(StillProvider(None)))
    assert err.value.code == "invalid_sdp" and hub.peer_count == 0
