"""Where a live pipeline's results go: signed webhooks, MQTT and files.

Sinks are synchronous and are called from a worker thread, never from the event
loop. ``emit`` may raise; the runner logs and counts the error and keeps going. A sink
whose deliveries happen elsewhere (webhooks, sent by the outbox) also reports their
failures through :meth:`ReportsFailures.failures`, which the runner polls.
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
from sqlalchemy import select

from visionserve.errors import Conflict, Unprocessable
from visionserve.platform import webhooks
from visionserve.store.db import engine_for, session_scope
from visionserve.store.records import WebhookAttempt, WebhookDelivery
from visionserve.surfaces.inspect.confinement import DestinationRefused, IoPolicy
from visionserve.surfaces.inspect.live.config import parse_config
from visionserve.surfaces.inspect.masking import mask_url
from visionserve.surfaces.inspect.schemas import FilesystemConfig, MqttConfig, WebhookConfig

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


@runtime_checkable
class ReportsFailures(Protocol):
    """A sink whose deliveries are made elsewhere, and can fail after ``emit`` returned."""

    def failures(self) -> list[str]:
        """Why deliveries failed since the last call, oldest first (blocking)."""
        ...


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
    policy: IoPolicy | None = None,
) -> Sink:
    """Build a sink from its stored config (blocking).

    Args:
        policy: Where sinks may write and connect, checked now, as the sink is set up
            (and by a filesystem sink on every write). Whatever runs a config a client
            sent passes one; None (tests, trusted tools) writes and connects anywhere.

    Raises:
        Unprocessable: Unknown type or a config the schema refuses.
        DestinationRefused: The policy refuses the folder or the address.
        SinkError: The sink cannot be set up (output dir not writable, broker refused
            or its name does not resolve).
    """
    if type == "webhook":
        hook = parse_config(WebhookConfig, config, "sink")
        if policy is not None:
            policy.webhook(hook.url)  # the outbox checks every delivery again
        return WebhookSink(hook, database_url=database_url, secret=webhook_secret)
    if type == "mqtt":
        mqtt_config = parse_config(MqttConfig, config, "sink")
        address = None
        if policy is not None:
            address = policy.broker(mqtt_config.broker)
            if address is None:
                shown = mask_url(mqtt_config.broker)
                raise SinkError(f"cannot resolve the host of MQTT broker {shown}")
        return MqttSink(mqtt_config, address=address)
    if type == "filesystem":
        return FilesystemSink(parse_config(FilesystemConfig, config, "sink"), policy=policy)
    raise Unprocessable(
        f"unknown sink type {type!r}; valid: filesystem, mqtt, webhook", code="invalid_sink_config"
    )


# --- webhook ---------------------------------------------------------------------------


class WebhookSink:
    """Adds one signed outbox row per event; the platform's Deliverer sends and retries it.

    The outbox Deliverer always POSTs, so a configured PUT/PATCH is sent as POST (logged
    once here). Images are not sent: the payload is JSON kept in the database.

    Deliveries happen in the job worker, after :meth:`emit` returned; :meth:`failures`
    reads their failed attempts (a receiver down, an address the egress policy refuses)
    from the outbox's attempt log, for the pipeline's ``sink_errors``.

    Args:
        max_tracked: Undelivered events whose attempts are followed; past it the oldest
            are no longer followed (their later failures go uncounted).
    """

    wants_image = False

    def __init__(
        self,
        config: WebhookConfig,
        *,
        database_url: str,
        secret: str | None,
        max_tracked: int = 1000,
    ) -> None:
        self.url = config.url
        self._database_url = database_url
        self._secret = secret
        # The signature and event id headers are ours; a sink header must not forge them.
        self._headers = {
            k: v for k, v in config.headers.items() if not k.lower().startswith("x-visionserve-")
        }
        self._max_tracked = max_tracked
        # Undelivered outbox rows of this sink -> the failed attempt numbers counted.
        self._tracked: dict[str, set[int]] = {}
        self._lock = threading.Lock()
        engine_for(database_url)  # migrate now, not on the first anomaly

    def emit(self, event: dict[str, Any], image: bytes | None) -> None:
        with session_scope(self._database_url) as session:
            delivery = webhooks.enqueue(
                session,
                # Unique per event: a restarted pipeline reuses frame numbers.
                event_id=f"evt_{uuid.uuid4().hex}",
                event_type=str(event.get("event", EVENT_TYPE)),
                url=self.url,
                payload=event,
                secret=self._secret,
                headers=self._headers,
            )
            delivery_id = delivery.id if delivery is not None else None
        if delivery_id is not None:
            with self._lock:
                self._tracked[delivery_id] = set()
                while len(self._tracked) > self._max_tracked:
                    del self._tracked[next(iter(self._tracked))]

    def failures(self) -> list[str]:
        """Errors of this sink's delivery attempts that failed since the last call."""
        with self._lock:
            ids = list(self._tracked)
        if not ids:
            return []
        with session_scope(self._database_url) as s:
            # Settled rows first: their last attempt committed with the status, so the
            # attempt query below sees it and nothing is dropped unread.
            settled = set(
                s.scalars(
                    select(WebhookDelivery.id).where(
                        WebhookDelivery.id.in_(ids), WebhookDelivery.status != "pending"
                    )
                )
            )
            attempts = s.execute(
                select(WebhookAttempt.delivery_id, WebhookAttempt.attempt, WebhookAttempt.error)
                .where(WebhookAttempt.delivery_id.in_(ids), WebhookAttempt.error.is_not(None))
                .order_by(WebhookAttempt.id)
            ).all()
        errors: list[str] = []
        with self._lock:
            for delivery_id, attempt, error in attempts:
                seen = self._tracked.get(delivery_id)
                if seen is not None and attempt not in seen:
                    seen.add(attempt)
                    errors.append(f"webhook delivery failed: {error}")
            for delivery_id in settled:
                self._tracked.pop(delivery_id, None)
        return errors

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
        address: str | None = None,
        connect_timeout_s: float = 5.0,
        max_queued: int = 1000,
        flush_timeout_s: float = 2.0,
    ) -> None:
        """Connect (in the background) to the broker.

        Args:
            address: The broker's address as the egress policy checked it. A plain
                connection goes there rather than to the name, so that neither a DNS
                answer that changes nor paho's reconnects reach another host; TLS
                connects by name, which its certificate check needs.
        """
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

        client.connect_async(address if address and not tls else parts.hostname, port, keepalive=30)
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

    def __init__(self, config: FilesystemConfig, *, policy: IoPolicy | None = None) -> None:
        self._policy = policy
        if policy is not None:
            self.output_dir = policy.output_dir(config.output_dir)
        else:
            self.output_dir = Path(config.output_dir).expanduser()
        self.wants_image = config.save_images
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create output dir {self.output_dir}: {exc}") from None

    def emit(self, event: dict[str, Any], image: bytes | None) -> None:
        if self._policy is not None:
            try:  # a folder swapped for a symlink since the start must not lead out
                self._policy.output_dir(str(self.output_dir))
            except DestinationRefused as exc:
                raise SinkError(exc.message) from None
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
