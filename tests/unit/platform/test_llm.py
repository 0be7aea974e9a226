"""The shared LLM client against a local server speaking the OpenAI chat protocol."""

from __future__ import annotations

import base64

import pytest

from tests.llm_stub import openai_stub
from visionserve.errors import EgressRefused, ServiceUnavailable
from visionserve.platform.egress import EgressPolicy
from visionserve.platform.llm import LlmClient
from visionserve.settings import EgressSettings, LlmSettings

LOOPBACK = EgressPolicy(EgressSettings(allow=["127.0.0.1"]))


@pytest.fixture
def openai_server():  # type: ignore[no-untyped-def]
    with openai_stub() as server:
        yield server


async def test_complete_sends_prompt_text_and_image(openai_server) -> None:  # type: ignore[no-untyped-def]
    url, seen = openai_server
    client = LlmClient(LlmSettings(base_url=url, api_key="sk-local", model="tiny"), LOOPBACK)
    answer = await client.complete("Say it as HTML.", "a b c d e f g h", b"\x89PNG-bytes")
    assert answer == "<table><tr><td> c d e f g h</td></tr></table>"
    (call,) = seen
    assert call["path"] == "/v1/chat/completions" and call["auth"] == "Bearer sk-local"
    body = call["body"]
    assert body["model"] == "tiny" and body["temperature"] == 0
    assert "response_format" not in body
    text, image = body["messages"][0]["content"]
    assert text == {"type": "text", "text": "Say it as HTML.\n\na b c d e f g h"}
    assert image["image_url"]["url"] == (
        "data:image/png;base64," + base64.b64encode(b"\x89PNG-bytes").decode()
    )


async def test_response_format_is_passed_through(openai_server) -> None:  # type: ignore[no-untyped-def]
    url, seen = openai_server
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    client = LlmClient(LlmSettings(base_url=url), LOOPBACK)
    await client.complete("Extract.", "text", response_format=schema)
    (call,) = seen
    assert call["body"]["response_format"] == schema
    assert len(call["body"]["messages"][0]["content"]) == 1  # no image part


async def test_llm_errors_are_clear(openai_server) -> None:  # type: ignore[no-untyped-def]
    url, _ = openai_server
    with pytest.raises(ServiceUnavailable, match="HTTP 500"):
        await LlmClient(LlmSettings(base_url=url, model="broken"), LOOPBACK).complete("p", "t")
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        await LlmClient(LlmSettings(base_url="http://127.0.0.1:9/v1"), LOOPBACK).complete("p", "t")


async def test_endpoint_goes_through_the_egress_policy(openai_server) -> None:  # type: ignore[no-untyped-def]
    url, seen = openai_server
    closed = EgressPolicy(EgressSettings())  # loopback not allowed
    with pytest.raises(EgressRefused):
        await LlmClient(LlmSettings(base_url=url), closed).complete("p", "t")
    assert seen == []


def test_an_endpoint_is_required() -> None:
    with pytest.raises(ValueError, match="no LLM endpoint"):
        LlmClient(LlmSettings(), LOOPBACK)
