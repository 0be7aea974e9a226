"""Where a live pipeline's results go: signed webhooks, MQTT and files.

Sinks are synchronous and are called from a worker thread, never from the event
loop. ``emit`` may raise; the runner logs and counts the error and keeps going.
Constructing a sink blocks (database migrations, the first MQTT connect), so the
caller makes sinks in a thread too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from visionserve import webhooks
from visionserve.errors import Conflict, Unprocessable
from visionserve.live.config import parse_config
from visionserve.schemas.inspect import FilesystemConfig, MqttConfig, WebhookConfig
from visionserve.store.db import engine_for, session_scope

log = logging.getLogger(__name__)

EVENT_TYPE = "anomaly.detected"


class SinkError(Conflict):
    """A sink that cannot be set up (broker refused us) or failed to take one event."""

    code = "sink_unavailable"
    retryable = True


@runtime_checkable
class Sink(Protocol):
    """Receives pipeline events. ``wants_image`` asks the runner to encode the frame."""

    wants_image: bool

    def emit(self, event: dict[str, Any], image: bytes | None) -> None: ...

    def close(self) -> None: ...


def anomaly_event(
    *,
    pipeline_id: str,
    active_pipeline_id: str,
    frame: int,
    timestamp: datetime,
    score: float,
    is_anomalous: bool,
    threshold: float,
) -> dict[str, Any]:
    """The JSON body every sink sends for one inspected frame."""
    return {
        "event": EVENT_TYPE,
        "pipeline_id": pipeline_id,
        "active_pipeline_id": active_pipeline_id,
        "frame": frame,
        "timestamp": timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "score": float(score),
        "label": "anomalous" if is_anomalous else "normal",
        "threshold": float(threshold),
    }


def make_sink(
    type: str,
    config: dict[str, Any],
    *,
    database_url: str,
    webhook_secret: str | None,
) -> Sink:
    """Build a sink from its stored config (blocking).

    Raises:
        Unprocessable: Unknown type or a config the schema refuses.
        SinkError: The sink cannot be set up (output dir not writable, broker refused).
    """
    if type == "webhook":
        return WebhookSink(
            parse_config(WebhookConfig, config, "sink"),
            database_url=database_url,
            secret=webhook_secret,
        )
    if type == "mqtt":
        return MqttSink(parse_config(MqttConfig, config, "sink"))
    if type == "filesystem":
        return FilesystemSink(parse_config(FilesystemConfig, config, "sink"))
    raise Unprocessable(
        f"unknown sink type {type!r}; valid: filesystem, mqtt, webhook", code="invalid_sink_config"
    )


# --- webhook ---------------------------------------------------------------------------


class WebhookSink:
    """Adds one signed outbox row per event; the platform's Deliverer sends and retries it.

    The outbox Deliverer always POSTs, so a configured PUT/PATCH is sent as POST (logged
    once here). Images are not sent: the payload is JSON kept in the database.
    """

    wants_image = False

    def __init__(self, config: WebhookConfig, *, database_url: str, secret: str | None) -> None:
        self.url = config.url
        self._database_url = database_url
        self._secret = secret
        # The signature and event id headers are ours; a sink header must not forge them.
        self._headers = {
            k: v for k, v in config.headers.items() if not k.lower().startswith("x-visionserve-")
        }
        engine_for(database_url)  # migrate now, not on the first anomaly

    def emit(self, event: dict[str, Any], image: bytes | None) -> None:
        with session_scope(self._database_url) as session:
            webhooks.enqueue(
                session,
                # Unique per event: a restarted pipeline reuses frame numbers.
                event_id=f"evt_{uuid.uuid4().hex}",
                event_type=str(event.get("event", EVENT_TYPE)),
                url=self.url,
                payload=event,
                secret=self._secret,
                headers=self._headers,
            )

    def close(self) -> None:
        pass


# --- mqtt ------------------------------------------------------------------------------


class MqttSink:
    """Publishes each event as JSON with QoS 1 through one long-lived paho client.

    The client connects once in the background (``loop_start``) and paho reconnects on
    a drop; events published while disconnected wait in paho's queue (bounded by
    ``max_queued``) and go out on reconnect. A broker that refuses the connection
    (bad credentials) fails construction; one that is unreachable only logs, so a
    pipeline can start before its broker.
    """

    wants_image = False

    def __init__(
        self,
        config: MqttConfig,
        *,
        connect_timeout_s: float = 5.0,
        max_queued: int = 1000,
        flush_timeout_s: float = 2.0,
    ) -> None:
        if any(c in config.topic for c in "+#\0"):
            raise Unprocessable(
                f"MQTT topic {config.topic!r} has a wildcard", code="invalid_sink_config"
            )
        parts = urlsplit(config.broker)
        tls = parts.scheme in ("mqtts", "ssl")
        if not parts.hostname:
            raise Unprocessable(
                f"MQTT broker URL has no host: {config.broker}", code="invalid_sink_config"
            )
        port = parts.port or (8883 if tls else 1883)
        self.topic = config.topic
        self.broker = f"{parts.scheme}://{parts.hostname}:{port}"
        self._closing = False
        self._flush_timeout_s = flush_timeout_s
        self._connected = threading.Event()
        self._first_outcome = threading.Event()
        self._refused: str | None = None
        # Message ids sent but not acknowledged (PUBACK), for a clean close. paho can
        # acknowledge before publish() returns, hence the "acked early" set.
        self._unacked: set[int] = set()
        self._acked_early: set[int] = set()
        self._acks_lock = threading.Lock()

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"visionserve-{uuid.uuid4().hex[:12]}"
        )
        # Credentials in the config win over any in the broker URL.
        username = config.username or parts.username
        if username:
            client.username_pw_set(username, config.password or parts.password)
        if tls:
            client.tls_set()  # the system CA store
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(max_queued)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        self._client = client

        client.connect_async(parts.hostname, port, keepalive=30)
        client.loop_start()
        if not self._first_outcome.wait(connect_timeout_s):
            log.warning("MQTT broker %s not reachable yet; events queue until it is", self.broker)
        elif self._refused is not None:
            self._shutdown()
            raise SinkError(f"MQTT broker {self.broker} refused the connection: {self._refused}")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            self._refused = str(reason_code)
            log.warning("MQTT broker %s refused the connection: %s", self.broker, reason_code)
        else:
            self._connected.set()
            log.info("MQTT sink connected to %s", self.broker)
        self._first_outcome.set()

    def _on_connect_fail(self, client, userdata) -> None:  # type: ignore[no-untyped-def]
        # Network-level failure: paho retries on its own; not a refusal.
        self._first_outcome.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if self._connected.is_set() and not self._closing:
            log.warning("MQTT sink lost %s (%s); reconnecting", self.broker, reason_code)
        self._connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        with self._acks_lock:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._acked_early.add(mid)

    def emit(self, event: dict[str, Any], image: bytes | None) -> None:
        payload = json.dumps(event, separators=(",", ":"), default=str)
        info = self._client.publish(self.topic, payload, qos=1)
        # NO_CONN with QoS 1 means "queued until reconnect", which is what we want.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise SinkError(f"MQTT publish to {self.topic} failed: {mqtt.error_string(info.rc)}")
        with self._acks_lock:
            if info.mid in self._acked_early:
                self._acked_early.discard(info.mid)
            else:
                self._unacked.add(info.mid)

    def close(self) -> None:
        """Give in-flight messages a moment to be acknowledged, then disconnect."""
        deadline = time.monotonic() + self._flush_timeout_s
        while self.connected and time.monotonic() < deadline:
            with self._acks_lock:
                if not self._unacked:
                    break
            time.sleep(0.02)
        self._shutdown()

    def _shutdown(self) -> None:
        self._closing = True
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._client.loop_stop()


# --- filesystem ------------------------------------------------------------------------


class FilesystemSink:
    """Writes ``<output_dir>/<timestamp>_<frame>.json`` and, if asked, the image beside it.

    Each file appears whole or not at all (temp file + rename); the image is written
    before its JSON so a watcher that reacts to the JSON always finds the image.
    """

    def __init__(self, config: FilesystemConfig) -> None:
        self.output_dir = Path(config.output_dir).expanduser()
        self.wants_image = config.save_images
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create output dir {self.output_dir}: {exc}") from None

    def emit(self, event: dict[str, Any], image: bytes | None) -> None:
        stem = f"{_stamp(event.get('timestamp'))}_{int(event.get('frame', 0)):08d}"
        record = dict(event)
        try:
            if image is not None and self.wants_image:
                name = stem + _image_suffix(image)
                _atomic_write(self.output_dir / name, image)
                record["image"] = name
            _atomic_write(self.output_dir / f"{stem}.json", json.dumps(record, indent=2).encode())
        except OSError as exc:
            raise SinkError(f"cannot write to {self.output_dir}: {exc}") from None

    def close(self) -> None:
        pass


def _stamp(timestamp: Any) -> str:
    """A sortable, filename-safe UTC stamp: ``20250108T163000123Z`` (ms)."""
    try:
        when = datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        when = datetime.now(UTC)
    return f"{when:%Y%m%dT%H%M%S}{when.microsecond // 1000:03d}Z"


def _image_suffix(data: bytes) -> str:
    return ".png" if data.startswith(b"\x89PNG") else ".jpg"


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # the rename must not publish a file still empty on disk
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
