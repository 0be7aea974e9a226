"""Where a running pipeline's sources read and sinks write or connect; write-only secrets;
sink failures (webhook deliveries the outbox refuses included) in the metrics."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from visionserve.errors import Unprocessable
from visionserve.platform import egress, webhooks
from visionserve.platform.egress import EgressPolicy
from visionserve.settings import Settings
from visionserve.surfaces.inspect.confinement import DestinationRefused, IoPolicy
from visionserve.surfaces.inspect.live.runner import PipelineRunner
from visionserve.surfaces.inspect.live.sinks import (
    FilesystemSink,
    SinkError,
    anomaly_event,
    make_sink,
)
from visionserve.surfaces.inspect.live.sources import SourceError, open_source
from visionserve.surfaces.inspect.masking import mask_config, mask_url, restore_secrets
from visionserve.surfaces.inspect.schemas import MASK, FilesystemConfig

# Tests with settings run on SQLite only: nothing here depends on the database backend.
sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def policy_for(
    settings: Settings, *, allow: list[str] | None = None, lans: bool = True
) -> IoPolicy:
    settings.egress.allow = [] if allow is None else allow
    settings.inspect.allow_private_networks = lans
    return IoPolicy.from_settings(settings)


def write_video(path: Path, frames: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for level in range(frames):
        writer.write(np.full((64, 64, 3), 200 + level, np.uint8))
    writer.release()
    return path


@pytest.fixture
def listener() -> Iterator[tuple[int, list[socket.socket]]]:
    """A loopback TCP server that records every connection it gets, and answers an MQTT
    CONNECT with CONNACK 'not authorised' (so that a client knows at once)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn = server.accept()[0]
            except OSError:
                continue
            accepted.append(conn)
            try:
                conn.settimeout(1)
                conn.recv(1024)
                conn.sendall(b"\x20\x02\x00\x05")
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()
    for conn in accepted:
        conn.close()


# --- files -------------------------------------------------------------------------------


@sqlite
def test_video_sources_open_only_inside_the_root(settings: Settings, tmp_path: Path) -> None:
    policy = policy_for(settings)
    root = settings.home / "inspect" / "videos"
    write_video(root / "line.mp4")
    outside = write_video(tmp_path / "outside.mp4")
    (root / "link.mp4").symlink_to(outside)

    src = open_source("video_file", {"path": "line.mp4"}, policy=policy)
    try:
        assert src.read() is not None
    finally:
        src.close()
    for path in (str(outside), "../../../outside.mp4", "link.mp4", "/etc/passwd"):
        with pytest.raises(DestinationRefused, match="outside the allowed folders"):
            open_source("video_file", {"path": path}, policy=policy)
    # Without a policy (tests, trusted tools) any path opens, as before.
    open_source("video_file", {"path": str(outside)}).close()


@sqlite
def test_filesystem_sink_writes_only_inside_the_root(settings: Settings, tmp_path: Path) -> None:
    policy = policy_for(settings)
    root = settings.home / "inspect" / "output"
    for path in (str(tmp_path / "x"), "../../x", "/tmp/x"):
        with pytest.raises(DestinationRefused, match="outside the allowed folders"):
            make_sink(
                "filesystem",
                {"output_dir": path},
                database_url="",
                webhook_secret=None,
                policy=policy,
            )
    assert not (tmp_path / "x").exists()

    sink = make_sink(
        "filesystem", {"output_dir": "line1"}, database_url="", webhook_secret=None, policy=policy
    )
    assert isinstance(sink, FilesystemSink) and sink.output_dir == root / "line1"
    event = anomaly_event(
        pipeline_id="p",
        active_pipeline_id="a",
        frame=1,
        timestamp=datetime(2025, 1, 8, tzinfo=UTC),
        score=0.9,
        is_anomalous=True,
        threshold=0.5,
    )
    sink.emit(event, None)
    assert len(list((root / "line1").glob("*.json"))) == 1

    # The folder swapped for a symlink that leads out: the next write is refused.
    (root / "line1").rename(root / "old")
    (root / "line1").symlink_to(tmp_path)
    with pytest.raises(SinkError, match="outside the allowed folders"):
        sink.emit(event, None)
    assert list(tmp_path.glob("*.json")) == []


# --- network -----------------------------------------------------------------------------


@sqlite
@pytest.mark.parametrize("host", ["127.0.0.1", "169.254.169.254"])
def test_ip_camera_on_internal_address_is_refused_before_connecting(
    settings: Settings, listener: tuple[int, list[socket.socket]], host: str
) -> None:
    port, accepted = listener
    policy = policy_for(settings)
    with pytest.raises(DestinationRefused, match="refusing to connect"):
        open_source("ip_camera", {"url": f"rtsp://u:pw@{host}:{port}/x"}, policy=policy)
    time.sleep(0.2)
    assert accepted == []


@sqlite
def test_ip_camera_that_does_not_resolve_is_a_source_error(settings: Settings) -> None:
    with pytest.raises(SourceError, match="cannot resolve"):
        open_source("ip_camera", {"url": "rtsp://u:pw@cam.invalid/x"}, policy=policy_for(settings))


@sqlite
def test_mqtt_to_rays_gcs_port_is_refused_before_connecting(
    settings: Settings, listener: tuple[int, list[socket.socket]]
) -> None:
    port, accepted = listener
    config = {"broker": f"mqtt://127.0.0.1:{port}", "topic": "t"}
    with pytest.raises(DestinationRefused, match="loopback"):
        make_sink("mqtt", config, database_url="", webhook_secret=None, policy=policy_for(settings))
    time.sleep(0.2)
    assert accepted == []
    with pytest.raises(SinkError, match="cannot resolve"):
        make_sink(
            "mqtt",
            {"broker": "mqtt://broker.invalid", "topic": "t"},
            database_url="",
            webhook_secret=None,
            policy=policy_for(settings),
        )


@sqlite
def test_allow_listed_mqtt_connects_to_the_checked_address(
    settings: Settings,
    listener: tuple[int, list[socket.socket]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """paho connects to the address the policy checked, not to the name: a DNS answer
    that changes later (or on a reconnect) cannot lead it elsewhere."""
    port, accepted = listener
    # Only the policy's resolver knows this name; paho resolving it itself would fail.
    monkeypatch.setattr(egress, "resolve_host", lambda host: ["127.0.0.1"])
    policy = policy_for(settings, allow=["127.0.0.1"])
    with pytest.raises(SinkError, match="refused the connection"):  # the listener's answer
        make_sink(
            "mqtt",
            {"broker": f"mqtt://broker.test:{port}", "topic": "t"},
            database_url="",
            webhook_secret=None,
            policy=policy,
        )
    assert len(accepted) == 1


@sqlite
def test_webhook_sink_refused_at_start(settings: Settings) -> None:
    with pytest.raises(DestinationRefused, match="private network"):
        make_sink(
            "webhook",
            {"url": "http://10.1.2.3/hook"},
            database_url=settings.database_url,
            webhook_secret="s" * 16,
            policy=policy_for(settings),
        )


@sqlite
def test_private_networks_can_be_turned_off(settings: Settings) -> None:
    assert policy_for(settings).camera("rtsp://192.168.1.5/s") == "192.168.1.5"
    assert policy_for(settings).broker("mqtt://[fd00::5]:1883") == "fd00::5"
    with pytest.raises(DestinationRefused, match="ALLOW_PRIVATE_NETWORKS"):
        policy_for(settings, lans=False).camera("rtsp://192.168.1.5/s")
    # Loopback and metadata stay refused with private networks on.
    for url in ("rtsp://127.0.0.2/s", "rtsp://[::ffff:169.254.169.254]/s", "rtsp://100.64.0.1/s"):
        with pytest.raises(DestinationRefused):
            policy_for(settings).camera(url)


# --- failures in the metrics -------------------------------------------------------------


async def brightness(frame: np.ndarray) -> dict[str, Any]:
    return {"score": float(frame.mean()) / 255, "is_anomalous": True, "annotated": None}


@sqlite
async def test_refused_webhook_deliveries_count_as_sink_errors(
    settings: Settings, tmp_path: Path
) -> None:
    """The outbox refuses a private address (here: DNS changed after the start); the
    pipeline's metrics say so, with the reason."""
    video = write_video(tmp_path / "clip.mp4")
    sink = make_sink(
        "webhook",
        {"url": "http://10.1.2.3/hook"},
        database_url=settings.database_url,
        webhook_secret="s" * 16,
    )
    runner = PipelineRunner(
        pipeline_id="p",
        active_id="a",
        source_factory=lambda: open_source("video_file", {"path": str(video), "loop": True}),
        predict=brightness,
        sinks=[sink],
        threshold=0.5,
        fps=50,
        sink_poll_s=0.05,
    )
    deliverer = webhooks.Deliverer(
        settings.database_url, settings.webhooks, EgressPolicy(settings.egress), worker_id="t"
    )
    task = asyncio.create_task(runner.run())
    try:
        async with httpx.AsyncClient(**deliverer.egress.client_kwargs()) as client:
            deadline = time.monotonic() + 20
            while runner.metrics()["sink_errors"] == 0 and time.monotonic() < deadline:
                await deliverer.deliver_due(client)
                await asyncio.sleep(0.05)
    finally:
        await runner.stop()
        await task
    metrics = runner.metrics()
    assert metrics["sink_errors"] > 0
    assert "private network address 10.1.2.3" in metrics["last_sink_error"]
    assert metrics["last_sink_error"].startswith("webhook delivery failed")


@sqlite
async def test_sink_failures_carry_their_reason(settings: Settings, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=3)
    unwritable = tmp_path / "gone"
    sink = FilesystemSink(FilesystemConfig(output_dir=str(unwritable), save_images=False))
    unwritable.rmdir()
    unwritable.write_text("a file where the folder was")
    runner = PipelineRunner(
        pipeline_id="p",
        active_id="a",
        source_factory=lambda: open_source("video_file", {"path": str(video)}),
        predict=brightness,
        sinks=[sink],
        threshold=0.5,
        fps=100,
    )
    await asyncio.wait_for(runner.run(), 10)
    metrics = runner.metrics()
    assert metrics["sink_errors"] == 3
    assert metrics["last_sink_error"].startswith(f"FilesystemSink: cannot write to {unwritable}")


# --- masking -----------------------------------------------------------------------------


def test_mask_url() -> None:
    assert mask_url("rtsp://u:p@h:554/s?x=1") == f"rtsp://u:{MASK}@h:554/s?x=1"
    assert mask_url("rtsp://u:p@[fd00::1]:554/s") == f"rtsp://u:{MASK}@[fd00::1]:554/s"
    assert mask_url("rtsp://u:p:q@h/s") == f"rtsp://u:{MASK}@h/s"
    for url in ("rtsp://h/s", "rtsp://u@h/s", "mqtt://h:1883"):
        assert mask_url(url) == url


def test_mask_and_restore_round_trip() -> None:
    stored = {
        "url": "https://hooks.example/x",
        "method": "POST",
        "headers": {"Authorization": "Bearer a"},
        "secret": "whsec_x",
    }
    shown = mask_config("webhook", stored)
    assert shown["headers"] == {"Authorization": MASK} and shown["secret"] == MASK
    assert stored["headers"] == {"Authorization": "Bearer a"}  # not changed in place
    assert restore_secrets("webhook", shown, stored) == stored
    # Header names match whatever their case.
    sent = {**shown, "headers": {"authorization": MASK}}
    assert restore_secrets("webhook", sent, stored)["headers"] == {"authorization": "Bearer a"}
    with pytest.raises(Unprocessable, match="mask"):
        restore_secrets("webhook", {**shown, "url": "https://evil.example/x"}, stored)
    # A type change keeps nothing (there is nothing of that type stored).
    with pytest.raises(Unprocessable, match="password"):
        restore_secrets("mqtt", {"broker": "mqtt://h", "topic": "t", "password": MASK}, None)
