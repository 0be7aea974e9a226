"""Live result sinks: webhook outbox rows, MQTT publishes and files on disk."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from visionserve.errors import Unprocessable
from visionserve.platform import webhooks
from visionserve.platform.egress import EgressPolicy
from visionserve.settings import EgressSettings
from visionserve.store.db import session_scope
from visionserve.store.records import WebhookDelivery
from visionserve.surfaces.inspect.live.sinks import (
    FilesystemSink,
    MqttSink,
    SinkError,
    WebhookSink,
    anomaly_event,
    make_sink,
)
from visionserve.surfaces.inspect.schemas import MqttConfig

WHEN = datetime(2025, 1, 8, 16, 30, 0, 123456, tzinfo=UTC)


def event(frame: int = 7, score: float = 0.91) -> dict[str, Any]:
    return anomaly_event(
        pipeline_id="pipe-1",
        active_pipeline_id="active-1",
        frame=frame,
        timestamp=WHEN,
        score=score,
        is_anomalous=score >= 0.5,
        threshold=0.5,
    )


def jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    assert ok
    return buf.tobytes()


def test_event_shape() -> None:
    assert event() == {
        "event": "anomaly.detected",
        "pipeline_id": "pipe-1",
        "active_pipeline_id": "active-1",
        "frame": 7,
        "timestamp": "2025-01-08T16:30:00.123456Z",
        "score": 0.91,
        "label": "anomalous",
        "threshold": 0.5,
    }
    assert event(score=0.2)["label"] == "normal"


@pytest.mark.parametrize(
    ("type_", "config", "match"),
    [
        ("webhook", {"url": "ftp://x"}, "url"),
        ("mqtt", {"broker": "mqtt://h:1883"}, "topic"),
        ("mqtt", {"broker": "mqtt://h:1883", "topic": "a/+/b"}, "wildcard"),
        ("filesystem", {"output_dir": "/tmp/x", "extra": 1}, "extra"),
        ("pigeon", {}, "unknown sink type"),
    ],
)
def test_bad_config_is_unprocessable(type_: str, config: dict, match: str) -> None:
    with pytest.raises(Unprocessable, match=match) as err:
        make_sink(type_, config, database_url="sqlite://", webhook_secret=None)
    assert err.value.status == 422


# --- filesystem ------------------------------------------------------------------------


def test_filesystem_writes_json_and_image_atomically(tmp_path: Path) -> None:
    out = tmp_path / "anomalies" / "line-1"
    sink = make_sink(
        "filesystem",
        {"output_dir": str(out), "save_images": True},
        database_url="unused",
        webhook_secret=None,
    )
    assert isinstance(sink, FilesystemSink) and sink.wants_image
    sink.emit(event(7), jpeg())
    sink.close()
    assert sorted(p.name for p in out.iterdir()) == [
        "20250108T163000123Z_00000007.jpg",
        "20250108T163000123Z_00000007.json",
    ]  # and no temp files left behind
    record = json.loads((out / "20250108T163000123Z_00000007.json").read_text())
    assert record == {**event(7), "image": "20250108T163000123Z_00000007.jpg"}
    image = cv2.imread(str(out / "20250108T163000123Z_00000007.jpg"))
    assert image.shape == (16, 16, 3)


def test_filesystem_without_images(tmp_path: Path) -> None:
    sink = make_sink(
        "filesystem",
        {"output_dir": str(tmp_path), "save_images": False},
        database_url="unused",
        webhook_secret=None,
    )
    assert not sink.wants_image
    sink.emit(event(1), jpeg())  # an image it did not ask for is ignored
    sink.emit(event(2), None)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["20250108T163000123Z_00000001.json", "20250108T163000123Z_00000002.json"]
    assert "image" not in json.loads((tmp_path / names[0]).read_text())


def test_filesystem_unusable_dir_is_a_sink_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SinkError, match="cannot create output dir"):
        make_sink(
            "filesystem", {"output_dir": str(blocker / "sub")}, database_url="", webhook_secret=None
        )
    sink = make_sink(
        "filesystem", {"output_dir": str(tmp_path / "ok")}, database_url="", webhook_secret=None
    )
    (tmp_path / "ok").rmdir()
    with pytest.raises(SinkError, match="cannot write"):
        sink.emit(event(), None)


# --- webhook ---------------------------------------------------------------------------


def webhook_sink(settings, url: str) -> WebhookSink:  # type: ignore[no-untyped-def]
    sink = make_sink(
        "webhook",
        {
            "url": url,
            "method": "POST",
            "headers": {"Authorization": "Bearer t0ken", "X-VisionServe-Event-Id": "forged"},
        },
        database_url=settings.database_url,
        webhook_secret="s3cret",
    )
    assert isinstance(sink, WebhookSink)
    return sink


def test_webhook_adds_one_signed_outbox_row_per_event(settings) -> None:  # type: ignore[no-untyped-def]
    sink = webhook_sink(settings, "https://alerts.example.com/anomaly")
    sink.emit(event(7), None)
    sink.emit(event(7), None)  # the same frame twice is still two events
    sink.close()
    with session_scope(settings.database_url) as s:
        rows = s.query(WebhookDelivery).order_by(WebhookDelivery.created_at).all()
        assert len(rows) == 2
        assert len({r.event_id for r in rows}) == 2
        for row in rows:
            assert row.url == "https://alerts.example.com/anomaly"
            assert row.event_type == "anomaly.detected"
            assert row.payload == event(7)
            assert row.secret == "s3cret"
            assert row.headers == {"Authorization": "Bearer t0ken"}
            assert row.status == "pending"


async def test_webhook_event_is_delivered_signed(settings, receiver) -> None:  # type: ignore[no-untyped-def]
    sink = webhook_sink(settings, receiver.url)
    sink.emit(event(3), None)
    deliverer = webhooks.Deliverer(
        settings.database_url,
        settings.webhooks,
        EgressPolicy(EgressSettings(allow=["127.0.0.1"])),
        worker_id="t",
    )
    async with httpx.AsyncClient(**deliverer.egress.client_kwargs()) as client:
        assert await deliverer.deliver_due(client) == 1
    [got] = receiver.wait_for(1, timeout=5)
    assert json.loads(got.body) == event(3)
    assert got.headers["Authorization"] == "Bearer t0ken"
    assert got.headers["X-VisionServe-Event"] == "anomaly.detected"
    assert got.headers["X-VisionServe-Event-Id"].startswith("evt_")
    assert webhooks.verify("s3cret", got.headers["X-VisionServe-Signature"], got.body)


# --- mqtt ------------------------------------------------------------------------------

BROKER = ("127.0.0.1", 1883)


@pytest.fixture
def subscriber() -> Iterator[tuple[str, list[dict[str, Any]], threading.Condition]]:
    """A paho client subscribed to a fresh topic on the local Mosquitto."""
    topic = f"visionserve/test/{uuid.uuid4().hex}"
    got: list[dict[str, Any]] = []
    arrived = threading.Condition()
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

    def on_connect(c, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        c.subscribe(topic, qos=1)

    def on_subscribe(c, userdata, mid, reason_codes, properties):  # type: ignore[no-untyped-def]
        subscribed.set()

    def on_message(c, userdata, msg):  # type: ignore[no-untyped-def]
        with arrived:
            got.append(json.loads(msg.payload))
            arrived.notify_all()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    try:
        client.connect(*BROKER, keepalive=10)
    except OSError as exc:
        pytest.skip(f"no MQTT broker at {BROKER}: {exc}")
    client.loop_start()
    assert subscribed.wait(5), "subscription not acknowledged"
    yield topic, got, arrived
    client.disconnect()
    client.loop_stop()


@pytest.mark.services
def test_mqtt_publishes_json_events(subscriber) -> None:  # type: ignore[no-untyped-def]
    topic, got, arrived = subscriber
    sink = make_sink(
        "mqtt",
        {"broker": f"mqtt://{BROKER[0]}:{BROKER[1]}", "topic": topic},
        database_url="",
        webhook_secret=None,
    )
    assert isinstance(sink, MqttSink) and sink.connected
    sink.emit(event(1), jpeg())
    sink.emit(event(2, score=0.2), None)
    with arrived:
        assert arrived.wait_for(lambda: len(got) >= 2, timeout=5)
    assert got == [event(1), event(2, score=0.2)]
    sink.emit(event(3), None)
    sink.close()  # waits for the broker's acknowledgement, then disconnects
    assert not sink.connected
    with arrived:
        assert arrived.wait_for(lambda: len(got) >= 3, timeout=5)


class DroppingProxy:
    """A TCP proxy to the broker whose connections can be cut, like a flaky network."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            while True:
                client, _ = self.server.accept()
                upstream = socket.create_connection(self.target)
                self.conns += [client, upstream]
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()
        except OSError:
            return

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def drop(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.conns.clear()

    def close(self) -> None:
        self.server.close()
        self.drop()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.services
def test_mqtt_reconnects_after_a_drop_and_sends_what_queued(subscriber) -> None:  # type: ignore[no-untyped-def]
    topic, got, arrived = subscriber
    proxy = DroppingProxy(BROKER)
    sink = MqttSink(MqttConfig(broker=f"mqtt://127.0.0.1:{proxy.port}", topic=topic))
    try:
        sink.emit(event(1), None)
        with arrived:
            assert arrived.wait_for(lambda: len(got) >= 1, timeout=5)
        proxy.drop()
        assert wait_until(lambda: not sink.connected, 5)
        sink.emit(event(2), None)  # while the connection is down
        with arrived:
            assert arrived.wait_for(lambda: len(got) >= 2, timeout=10), "not re-sent"
        assert sink.connected
        assert [e["frame"] for e in got] == [1, 2]
    finally:
        sink.close()
        proxy.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mqtt_unreachable_broker_queues_instead_of_failing() -> None:
    started = time.monotonic()
    sink = make_sink(
        "mqtt",
        {"broker": f"mqtt://127.0.0.1:{free_port()}", "topic": "t"},
        database_url="",
        webhook_secret=None,
    )
    assert isinstance(sink, MqttSink) and not sink.connected
    sink.emit(event(), None)  # queued for when the broker is back
    sink.close()
    assert time.monotonic() - started < 5


@pytest.fixture
def refusing_broker() -> Iterator[int]:
    """Answers every MQTT CONNECT with CONNACK 'not authorised' (3.1.1 return code 5)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def serve() -> None:
        try:
            while True:
                conn, _ = srv.accept()
                conn.recv(1024)
                conn.sendall(b"\x20\x02\x00\x05")
                conn.close()
        except OSError:
            return

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


def test_mqtt_refused_credentials_fail_construction(refusing_broker: int) -> None:
    with pytest.raises(SinkError, match="refused the connection") as err:
        make_sink(
            "mqtt",
            {
                "broker": f"mqtt://127.0.0.1:{refusing_broker}",
                "topic": "t",
                "username": "u",
                "password": "wrong",
            },
            database_url="",
            webhook_secret=None,
        )
    assert "wrong" not in err.value.message
