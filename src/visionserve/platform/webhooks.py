"""Signed webhook delivery from an outbox, at least once, with retries.

Producers add an outbox row in the same transaction as the state change it
announces (:func:`enqueue`); a deliverer loop claims due rows with a lease, POSTs
them, logs every attempt and retries with exponential backoff and full jitter.

Signature (documented in README): ``X-VisionServe-Signature: t=<unix>,v1=<hex>``
where ``hex = HMAC_SHA256(secret, f"{t}.{raw_body}")``. ``X-VisionServe-Event-Id``
is stable across retries so receivers can de-duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from visionserve.errors import VisionServeError
from visionserve.platform.egress import EgressPolicy, pinned_request_args
from visionserve.platform.metrics import WEBHOOK_DELIVERIES, Metrics, NoMetrics
from visionserve.settings import WebhookSettings
from visionserve.store.db import session_scope
from visionserve.store.records import WebhookAttempt, WebhookDelivery, utcnow

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-VisionServe-Signature"
EVENT_ID_HEADER = "X-VisionServe-Event-Id"
EVENT_TYPE_HEADER = "X-VisionServe-Event"
LEASE_S = 60.0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-VisionServe-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance_s: int = 300) -> bool:
    """Check a signature header as a receiver would (constant time, bounded age)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()


def enqueue(
    session: Session,
    *,
    event_id: str,
    event_type: str,
    url: str,
    payload: dict[str, Any],
    secret: str | None = None,
    headers: dict[str, str] | None = None,
) -> WebhookDelivery | None:
    """Add an outbox row in the caller's transaction; a repeated event is ignored."""
    exists = session.scalar(
        select(WebhookDelivery.id).where(
            WebhookDelivery.event_id == event_id, WebhookDelivery.url == url
        )
    )
    if exists is not None:
        return None
    delivery = WebhookDelivery(
        event_id=event_id,
        event_type=event_type,
        url=url,
        secret=secret,
        payload=payload,
        headers=headers or {},
    )
    session.add(delivery)
    session.flush()
    return delivery


def backoff_s(attempt: int, settings: WebhookSettings) -> float:
    """Exponential backoff with jitter: uniform in [c/2, c], c = min(max, base * 2**(n-1))."""
    ceiling = min(settings.backoff_max_s, settings.backoff_base_s * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


class Deliverer:
    """Delivers due outbox rows; run :meth:`run` in a background task."""

    def __init__(
        self,
        database_url: str,
        settings: WebhookSettings,
        egress: EgressPolicy,
        *,
        worker_id: str,
        default_secret: str | None = None,
        poll_s: float = 0.5,
        metrics: Metrics | None = None,
    ) -> None:
        self.database_url = database_url
        self.settings = settings
        self.egress = egress
        self.worker_id = worker_id
        self.default_secret = default_secret or settings.default_secret
        self.poll_s = poll_s
        self.metrics = metrics or NoMetrics()
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        # The egress policy's client options keep the pinned IP honest (no proxies, no reuse).
        options = {**self.egress.client_kwargs(), "timeout": self.settings.timeout_s}
        async with httpx.AsyncClient(**options) as client:
            while not self._stopping.is_set():
                try:
                    delivered = await self.deliver_due(client)
                except Exception:
                    log.exception("webhook delivery loop failed; retrying")
                    delivered = 0
                if not delivered:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), self.poll_s)

    def stop(self) -> None:
        self._stopping.set()

    async def deliver_due(self, client: httpx.AsyncClient, limit: int = 10) -> int:
        """Claim up to ``limit`` due rows and attempt each once; returns how many."""
        batch = await asyncio.to_thread(self._claim, limit)
        await asyncio.gather(*(self._attempt(client, d) for d in batch))
        return len(batch)

    def _claim(self, limit: int) -> list[WebhookDelivery]:
        now = utcnow()
        with session_scope(self.database_url) as s:
            rows = list(
                s.scalars(
                    select(WebhookDelivery)
                    .where(
                        WebhookDelivery.status == "pending",
                        WebhookDelivery.next_attempt_at <= now,
                        or_(
                            WebhookDelivery.lease_expires_at.is_(None),
                            WebhookDelivery.lease_expires_at < now,
                        ),
                    )
                    .order_by(WebhookDelivery.next_attempt_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            for row in rows:
                row.lease_owner = self.worker_id
                row.lease_expires_at = now + timedelta(seconds=LEASE_S)
                row.attempts += 1
            s.flush()
            for row in rows:
                s.expunge(row)
            return rows

    async def _attempt(self, client: httpx.AsyncClient, d: WebhookDelivery) -> None:
        body = encode(d.payload)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "VisionServe-Webhooks/1",
            EVENT_ID_HEADER: d.event_id,
            EVENT_TYPE_HEADER: d.event_type,
            **d.headers,
        }
        secret = d.secret or self.default_secret
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        permanent = False
        try:
            target = await asyncio.to_thread(self.egress.check, d.url)
            url, host_headers, extensions = pinned_request_args(target, d.url)
            response = await client.post(
                url, content=body, headers={**headers, **host_headers}, extensions=extensions
            )
            status_code = response.status_code
            if status_code >= 300:
                error = f"receiver answered HTTP {status_code}"
        except VisionServeError as exc:  # refused by the egress policy: retrying won't help
            error, permanent = exc.message, exc.code == "url_not_allowed"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        duration_ms = (time.perf_counter() - started) * 1000
        outcome = await asyncio.to_thread(
            self._record_attempt, d, status_code, error, duration_ms, permanent
        )
        if outcome is not None:
            self.metrics.inc(WEBHOOK_DELIVERIES, {"outcome": outcome})

    def _record_attempt(
        self,
        d: WebhookDelivery,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
        permanent: bool,
    ) -> str | None:
        """Log the attempt and move the row on; returns the outcome (None: not ours)."""
        with session_scope(self.database_url) as s:
            row = s.get(WebhookDelivery, d.id, with_for_update=True)
            if row is None or row.lease_owner != self.worker_id:
                return None
            s.add(
                WebhookAttempt(
                    delivery_id=row.id,
                    attempt=row.attempts,
                    status_code=status_code,
                    error=error,
                    duration_ms=duration_ms,
                )
            )
            row.last_status_code = status_code
            row.last_error = error
            row.lease_owner = None
            row.lease_expires_at = None
            if error is None:
                row.status = "delivered"
                row.delivered_at = utcnow()
                return "delivered"
            if permanent or row.attempts >= self.settings.max_attempts:
                row.status = "failed"
                log.warning("webhook %s to %s failed for good: %s", row.event_id, row.url, error)
                return "failed"
            delay = backoff_s(row.attempts, self.settings)
            row.next_attempt_at = utcnow() + timedelta(seconds=delay)
            return "retry"
