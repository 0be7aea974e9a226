"""Webhook outbox delivery: signatures, retries with backoff, the delivery log, egress."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from visionserve.platform import webhooks
from visionserve.platform.egress import EgressPolicy
from visionserve.settings import EgressSettings
from visionserve.store.db import session_scope
from visionserve.store.records import WebhookAttempt, WebhookDelivery


def add(settings, url: str, event_id: str = "evt-1", secret: str | None = "topsecret") -> None:  # type: ignore[no-untyped-def]
    with session_scope(settings.database_url) as s:
        webhooks.enqueue(
            s,
            event_id=event_id,
            event_type="job.completed",
            url=url,
            payload={"job_id": "j1", "status": "completed"},
            secret=secret,
        )


def deliverer(settings, allow: list[str] | None = None) -> webhooks.Deliverer:  # type: ignore[no-untyped-def]
    policy = EgressPolicy(EgressSettings(allow=["127.0.0.1"] if allow is None else allow))
    return webhooks.Deliverer(settings.database_url, settings.webhooks, policy, worker_id="t")


async def drain(d: webhooks.Deliverer, rounds: int = 40) -> None:
    async with httpx.AsyncClient(**d.egress.client_kwargs()) as client:
        for _ in range(rounds):
            await d.deliver_due(client)
            await __import__("asyncio").sleep(0.05)


def test_sign_and_verify_round_trip() -> None:
    body = b'{"a":1}'
    header = webhooks.sign("k", int(time.time()), body)
    assert webhooks.verify("k", header, body)
    assert not webhooks.verify("other", header, body)
    assert not webhooks.verify("k", header, body + b" ")
    stale = webhooks.sign("k", int(time.time()) - 3600, body)
    assert not webhooks.verify("k", stale, body)
    assert not webhooks.verify("k", "garbage", body)


def test_same_event_is_queued_once(settings) -> None:  # type: ignore[no-untyped-def]
    add(settings, "http://127.0.0.1:1/x")
    add(settings, "http://127.0.0.1:1/x")
    with session_scope(settings.database_url) as s:
        assert s.query(WebhookDelivery).count() == 1


async def test_signed_delivery_retries_after_500(settings, receiver) -> None:  # type: ignore[no-untyped-def]
    receiver.script = [500, 503]
    add(settings, receiver.url)
    await drain(deliverer(settings))
    got = receiver.wait_for(3, timeout=1)
    assert len(got) == 3
    assert {r.headers["X-VisionServe-Event-Id"] for r in got} == {"evt-1"}
    for r in got:
        assert webhooks.verify("topsecret", r.headers["X-VisionServe-Signature"], r.body)
        assert json.loads(r.body) == {"job_id": "j1", "status": "completed"}
    with session_scope(settings.database_url) as s:
        row = s.query(WebhookDelivery).one()
        assert (row.status, row.attempts, row.last_status_code) == ("delivered", 3, 200)
        log = s.query(WebhookAttempt).order_by(WebhookAttempt.attempt).all()
        assert [a.status_code for a in log] == [500, 503, 200]
        assert log[0].error == "receiver answered HTTP 500" and log[2].error is None


async def test_gives_up_after_max_attempts(settings, receiver) -> None:  # type: ignore[no-untyped-def]
    receiver.script = [500] * 10
    add(settings, receiver.url)
    await drain(deliverer(settings), rounds=60)
    assert len(receiver.requests) == settings.webhooks.max_attempts
    with session_scope(settings.database_url) as s:
        assert s.query(WebhookDelivery).one().status == "failed"


@pytest.mark.parametrize("url", ["http://10.0.0.1/hook", "http://169.254.169.254/latest"])
async def test_private_targets_are_refused_without_connecting(settings, url) -> None:  # type: ignore[no-untyped-def]
    add(settings, url)
    await drain(deliverer(settings, allow=[]), rounds=2)
    with session_scope(settings.database_url) as s:
        row = s.query(WebhookDelivery).one()
        assert row.status == "failed" and row.attempts == 1
        assert row.last_status_code is None and "address" in row.last_error


def test_backoff_grows_and_is_capped(settings) -> None:  # type: ignore[no-untyped-def]
    w = settings.webhooks.model_copy(update={"backoff_base_s": 1.0, "backoff_max_s": 8.0})
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [webhooks.backoff_s(attempt, w) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered
