"""The generative backend against a loopback server speaking /v1/images/edits (multipart)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.unit.edit.loopback import Reply, Seen, loopback
from visionserve.models.edit import GenerativeBackend, GenerativeFailed, QuotaExceeded
from visionserve.platform.egress import EgressPolicy
from visionserve.settings import EgressSettings

RESULT = Image.new("RGB", (64, 48), (10, 200, 30))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _json(body: Any, status: int = 200) -> Reply:
    return Reply(status=status, body=json.dumps(body).encode())


def _backend(url: str, model: str = "gpt-image-1", timeout_s: float = 5.0) -> GenerativeBackend:
    return GenerativeBackend(
        url,
        "sk-img",
        model,
        timeout_s,
        egress=EgressPolicy(EgressSettings(allow=["127.0.0.1"])),
    )


def _source() -> Image.Image:
    return Image.fromarray(np.full((40, 50, 3), 128, np.uint8))


async def test_gpt_image_1_answers_base64() -> None:
    b64 = base64.b64encode(_png(RESULT)).decode()
    with loopback(lambda s: _json({"created": 1, "data": [{"b64_json": b64}]})) as (url, seen):
        out = await _backend(url).edit(_source(), "add a dog")
    assert out.size == (64, 48) and out.convert("RGB").getpixel((5, 5)) == (10, 200, 30)
    (request,) = seen
    assert request.method == "POST" and request.path == "/v1/images/edits"
    assert request.headers["Authorization"] == "Bearer sk-img"
    assert request.form["model"] == "gpt-image-1" and request.form["prompt"] == "add a dog"
    assert "response_format" not in request.form  # gpt-image-1 always answers base64
    sent = Image.open(io.BytesIO(request.form["image"]))
    assert sent.format == "PNG" and sent.size == (50, 40)


async def test_dall_e_2_answers_a_url_or_base64() -> None:
    def answer(s: Seen) -> Reply:
        if s.method == "GET":
            return Reply(body=_png(RESULT), content_type="image/png")
        host = s.headers["Host"]
        return _json({"data": [{"url": f"http://{host}/files/result.png"}]})

    with loopback(answer) as (url, seen):
        out = await _backend(f"{url}/v1", model="dall-e-2").edit(_source(), "add a hat")
    assert out.size == (64, 48)
    assert [r.method for r in seen] == ["POST", "GET"] and seen[1].path == "/files/result.png"
    assert seen[0].path == "/v1/images/edits" and seen[0].form["response_format"] == "b64_json"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, {"code": "insufficient_quota", "type": "insufficient_quota"}),
        (402, {"code": "billing_hard_limit_reached", "type": "invalid_request_error"}),
        (429, {"code": None, "type": "insufficient_quota"}),
    ],
)
async def test_billing_and_quota_errors_are_quota_exceeded(status: int, error: dict) -> None:  # type: ignore[type-arg]
    body = {"error": {"message": "You exceeded your current quota, sk-secret", **error}}
    with loopback(lambda s: _json(body, status)) as (url, _), pytest.raises(QuotaExceeded) as info:
        await _backend(url).edit(_source(), "add a dog")
    assert "quota" in info.value.message and "sk-secret" not in info.value.message
    assert info.value.retryable is False


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (_json({"error": {"code": "rate_limit_exceeded", "message": "slow down"}}, 429), "rate"),
        (_json({"error": {"message": "internal detail /srv/x.py"}}, 500), "HTTP 500"),
        (Reply(status=502, body=b"<html>bad gateway</html>", content_type="text/html"), "HTTP 502"),
        (_json({"data": []}), "without an image"),
        (_json({"data": [{"b64_json": "!!!not base64!!!"}]}), "broken base64"),
        (_json({"data": [{"b64_json": base64.b64encode(b"not an image").decode()}]}), "unreadable"),
        (Reply(body=b"not json"), "without an image"),
    ],
)
async def test_other_failures_are_generative_failed(reply: Reply, message: str) -> None:
    with loopback(lambda s: reply) as (url, _), pytest.raises(GenerativeFailed) as info:
        await _backend(url).edit(_source(), "add a dog")
    assert not isinstance(info.value, QuotaExceeded)
    assert message in info.value.message
    assert "/srv/x.py" not in info.value.message


async def test_a_slow_backend_times_out() -> None:
    slow = Reply(delay_s=2.0, body=b"{}")
    with loopback(lambda s: slow) as (url, _), pytest.raises(GenerativeFailed) as info:
        await _backend(url, timeout_s=0.3).edit(_source(), "add a dog")
    assert "did not answer within 0.3 s" in info.value.message


async def test_an_unreachable_backend_fails_cleanly() -> None:
    with loopback(lambda s: Reply()) as (url, _):
        pass
    with pytest.raises(GenerativeFailed) as info:
        await _backend(url).edit(_source(), "add a dog")
    assert "unreachable" in info.value.message


async def test_the_egress_policy_guards_the_backend() -> None:
    from visionserve.errors import EgressRefused

    backend = GenerativeBackend(
        "http://127.0.0.1:9", None, "gpt-image-1", 1.0, egress=EgressPolicy(EgressSettings())
    )
    with pytest.raises(EgressRefused):
        await backend.edit(_source(), "add a dog")
