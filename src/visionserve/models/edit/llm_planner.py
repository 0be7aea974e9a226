"""An optional planner LLM: an OpenAI-compatible chat model made to call one strict tool,
``plan_edits``, whose arguments are validated into a :class:`Plan`.

Any failure (endpoint down, no tool call, arguments the catalogue refuses) falls back
to the rule planner, so a broken LLM never breaks an edit.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Protocol

from pydantic import ValidationError

from visionserve.errors import VisionServeError
from visionserve.models.edit.catalogue import OPERATIONS
from visionserve.models.edit.plan import MAX_STEPS, Plan, Step
from visionserve.models.edit.planner import MAX_PROMPT_CHARS, Planner

log = logging.getLogger(__name__)

TOOL_NAME = "plan_edits"
#: Most unsupported clauses kept from an answer (each cut to 200 characters).
MAX_UNSUPPORTED = 20
INSTRUCTIONS = (
    "You turn an image-editing request into a list of operations from a fixed catalogue. "
    "Call plan_edits once. Split the request into steps in the order asked; pick the one "
    "operation that does each step and fill its parameters (null keeps the default). Amounts "
    "are relative: 20% brighter is brightness amount 0.2, darker is negative. Rotation degrees "
    "are clockwise. Anything no operation does (adding objects, changing what is in the "
    "picture) goes to `unsupported` word for word; never approximate it with another operation."
)


class ToolClient(Protocol):
    """What the planner needs from :class:`visionserve.platform.llm.LlmClient`."""

    async def call_tool(self, prompt: str, text: str, tool: dict[str, Any]) -> dict[str, Any]: ...


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A field's JSON schema in the subset strict tool calling accepts, null allowed."""
    schema = {k: v for k, v in copy.deepcopy(schema).items() if k not in ("default", "title")}
    if "prefixItems" in schema:  # tuples (aspect ratios): an integer pair
        schema = {"type": "array", "items": {"type": "integer"}}
    if "anyOf" in schema:
        options = [_strict(o) for o in schema["anyOf"] if o.get("type") != "null"]
        return {"anyOf": [*options, {"type": "null"}]}
    for key in ("exclusiveMinimum", "exclusiveMaximum", "minimum", "maximum", "maxLength"):
        schema.pop(key, None)  # checked by our own validation, not every server knows them
    return {"anyOf": [schema, {"type": "null"}]}


def plan_edits_tool() -> dict[str, Any]:
    """The ``plan_edits`` function tool: one strict schema per catalogue operation."""
    variants = []
    for op in OPERATIONS.values():
        fields = op.params.model_json_schema().get("properties", {})
        variants.append(
            {
                "type": "object",
                "description": op.summary,
                "properties": {
                    "op": {"type": "string", "enum": [op.name]},
                    "params": {
                        "type": "object",
                        "properties": {name: _strict(s) for name, s in fields.items()},
                        "required": list(fields),
                        "additionalProperties": False,
                    },
                },
                "required": ["op", "params"],
                "additionalProperties": False,
            }
        )
    return {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": "The edit operations the request asks for, in order.",
            "strict": True,
            "parameters": {
                "type": "object",
                "properties": {
                    "steps": {"type": "array", "items": {"anyOf": variants}},
                    "unsupported": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["steps", "unsupported"],
                "additionalProperties": False,
            },
        },
    }


def plan_from_arguments(args: dict[str, Any]) -> Plan:
    """Validate the tool's arguments into a plan (nulls take the operation's defaults).

    Raises:
        ValueError: Arguments the catalogue refuses (pydantic's ValidationError is one).
    """
    raw_steps = args.get("steps")
    unsupported = args.get("unsupported", [])
    if not isinstance(raw_steps, list) or not isinstance(unsupported, list):
        raise ValueError("plan_edits arguments need lists `steps` and `unsupported`")
    if len(raw_steps) > MAX_STEPS:
        raise ValueError(f"more than {MAX_STEPS} steps")
    steps = []
    for raw in raw_steps:
        if not isinstance(raw, dict) or not isinstance(raw.get("params", {}), dict):
            raise ValueError("a step must be an object with `op` and `params`")
        params = {k: v for k, v in raw.get("params", {}).items() if v is not None}
        steps.append(Step(op=str(raw.get("op")), params=params))
    return Plan(steps=steps, unsupported=[str(u)[:200] for u in unsupported[:MAX_UNSUPPORTED]])


class LlmPlanner:
    """Plans with a chat model; the rule planner when that fails.

    Args:
        client: An OpenAI-compatible client with ``call_tool`` (the shared LlmClient).
        fallback: The rule planner used on any error.
    """

    def __init__(self, client: ToolClient, fallback: Planner) -> None:
        self.client = client
        self.fallback = fallback
        self.tool = plan_edits_tool()
        self.last_source = "rules"  # "llm" or "rules": who made the last plan (for logs, tests)

    async def plan(self, prompt: str) -> Plan:
        """The LLM's plan for ``prompt``, or the rule planner's when anything goes wrong."""
        try:
            args = await self.client.call_tool(INSTRUCTIONS, prompt[:MAX_PROMPT_CHARS], self.tool)
            plan = plan_from_arguments(args)
            if not plan.steps and not plan.unsupported:
                raise ValueError("an empty plan")
        except (VisionServeError, ValueError, ValidationError, TypeError) as exc:
            log.warning("planner LLM failed (%s); using the rule planner", type(exc).__name__)
            self.last_source = "rules"
            return self.fallback.plan(prompt)
        self.last_source = "llm"
        return plan
