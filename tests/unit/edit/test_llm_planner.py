"""The planner LLM against a loopback server speaking chat completions with tools."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.edit.loopback import Reply, loopback
from visionserve.models.edit import LlmPlanner, Planner
from visionserve.models.edit.llm_planner import TOOL_NAME, plan_edits_tool
from visionserve.platform.egress import EgressPolicy
from visionserve.platform.llm import LlmClient
from visionserve.settings import EgressSettings, LlmSettings


def _tool_reply(arguments: Any, name: str = TOOL_NAME) -> Reply:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}}
        ],
    }
    body = {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}
    return Reply(body=json.dumps(body).encode())


def _planner(url: str, *, timeout_s: float = 5.0) -> LlmPlanner:
    client = LlmClient(
        LlmSettings(base_url=f"{url}/v1", api_key="sk-test", model="planner", timeout_s=timeout_s),
        EgressPolicy(EgressSettings(allow=["127.0.0.1"])),
    )
    return LlmPlanner(client, Planner())


GOOD = {
    "steps": [
        {"op": "brightness", "params": {"amount": 0.25}},
        {"op": "crop", "params": {"mode": "aspect", "aspect": [4, 5], "width": None, "height": None,
                                  "margin": None, "padding": None}},
        {"op": "remove_background", "params": {}},
    ],
    "unsupported": ["add a dog"],
}  # fmt: skip


async def test_the_llm_plan_is_validated_and_used() -> None:
    with loopback(lambda seen: _tool_reply(GOOD)) as (url, seen):
        planner = _planner(url)
        plan = await planner.plan("a quarter brighter, 4:5 crop, no background, add a dog")
    assert planner.last_source == "llm"
    assert plan.ops() == ["brightness", "crop", "remove_background"]
    assert plan.steps[0].params == {"amount": 0.25}
    assert plan.steps[1].params["aspect"] == (4, 5) and plan.steps[1].params["margin"] == 0.1
    assert plan.unsupported == ["add a dog"]
    (request,) = seen
    body = json.loads(request.body)
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert body["tool_choice"] == {"type": "function", "function": {"name": TOOL_NAME}}
    (tool,) = body["tools"]
    assert tool["function"]["strict"] is True and tool == plan_edits_tool()
    assert body["messages"][1] == {
        "role": "user",
        "content": "a quarter brighter, 4:5 crop, no background, add a dog",
    }


def test_the_tool_schema_is_strict_everywhere() -> None:
    """Strict tool calling needs every object closed and every property required."""

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node.get("additionalProperties") is False
                assert set(node.get("required", [])) == set(node.get("properties", {}))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    tool = plan_edits_tool()
    walk(tool["function"]["parameters"])
    variants = tool["function"]["parameters"]["properties"]["steps"]["items"]["anyOf"]
    assert len(variants) >= 20
    assert "prefixItems" not in json.dumps(tool)


def _broken(kind: str) -> Reply:
    if kind == "http_500":
        return Reply(status=500, body=b'{"error": "boom"}')
    if kind == "not_json":
        return Reply(body=b"<html>gateway</html>", content_type="text/html")
    if kind == "no_tool_call":
        body = {"choices": [{"message": {"role": "assistant", "content": "brighter!"}}]}
        return Reply(body=json.dumps(body).encode())
    if kind == "other_tool":
        return _tool_reply(GOOD, name="something_else")
    if kind == "arguments_not_json":
        return _tool_reply("{steps: [")
    if kind == "unknown_op":
        return _tool_reply({"steps": [{"op": "teleport", "params": {}}], "unsupported": []})
    if kind == "bad_params":
        return _tool_reply(
            {"steps": [{"op": "upscale", "params": {"factor": 3}}], "unsupported": []}
        )
    if kind == "empty_plan":
        return _tool_reply({"steps": [], "unsupported": []})
    if kind == "slow":
        return Reply(delay_s=2.0, body=_tool_reply(GOOD).body)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "http_500",
        "not_json",
        "no_tool_call",
        "other_tool",
        "arguments_not_json",
        "unknown_op",
        "bad_params",
        "empty_plan",
        "slow",
    ],
)
async def test_any_llm_failure_falls_back_to_the_rules(kind: str) -> None:
    with loopback(lambda seen: _broken(kind)) as (url, seen):
        planner = _planner(url, timeout_s=0.5)
        plan = await planner.plan("make it 20% brighter, then remove the background")
    assert len(seen) == 1
    assert planner.last_source == "rules"
    assert plan.ops() == ["brightness", "remove_background"]
    assert plan.steps[0].params == {"amount": pytest.approx(0.2)}


async def test_an_unreachable_llm_falls_back_too() -> None:
    with loopback(lambda seen: Reply()) as (url, _):
        pass  # closed: nothing listens on that port now
    planner = _planner(url)
    plan = await planner.plan("rotate 90 degrees")
    assert planner.last_source == "rules" and plan.ops() == ["rotate"]


async def test_a_refused_endpoint_falls_back_too() -> None:
    client = LlmClient(
        LlmSettings(base_url="http://127.0.0.1:9/v1"), EgressPolicy(EgressSettings(allow=[]))
    )
    planner = LlmPlanner(client, Planner())
    plan = await planner.plan("invert the colours")
    assert planner.last_source == "rules" and plan.ops() == ["invert"]
