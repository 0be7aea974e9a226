"""One client for OpenAI-compatible chat endpoints, shared by every surface that asks an LLM.

``POST {base_url}/chat/completions`` with a text part and an optional PNG image part,
through the egress policy (the endpoint's address is checked and pinned like any other
outbound URL). What to ask, and what to do with the answer, belongs to the caller.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from visionserve.errors import ServiceUnavailable
from visionserve.platform.egress import EgressPolicy, pinned_request_args
from visionserve.settings import LlmSettings


class LlmClient:
    """POST /chat/completions, the OpenAI protocol most local servers speak.

    Args:
        settings: The endpoint, key, model and timeout.
        egress: The policy the endpoint's URL must pass.

    Raises:
        ValueError: No endpoint is configured (``settings.base_url`` is empty).
    """

    def __init__(self, settings: LlmSettings, egress: EgressPolicy) -> None:
        if not settings.base_url:
            raise ValueError("no LLM endpoint configured")
        self.settings = settings
        self.egress = egress

    async def complete(
        self,
        prompt: str,
        text: str,
        image_png: bytes | None = None,
        *,
        response_format: dict[str, Any] | None = None,
    ) -> str:
        """The model's answer to ``prompt`` followed by ``text`` (and the image, if any).

        Args:
            prompt: The instruction.
            text: The material, appended after a blank line.
            image_png: A PNG sent as a second (image) part of the message.
            response_format: Passed through as the body's ``response_format`` (e.g.
                ``{"type": "json_schema", "json_schema": {...}}``); None sends none.

        Returns:
            The first choice's message content, stripped.

        Raises:
            EgressRefused: The endpoint's URL is not allowed.
            ServiceUnavailable: The endpoint is unreachable, answers an HTTP error or
                an answer without a message.
        """
        content: list[dict[str, Any]] = [{"type": "text", "text": f"{prompt}\n\n{text}"}]
        if image_png:
            uri = "data:image/png;base64," + base64.b64encode(image_png).decode()
            content.append({"type": "image_url", "image_url": {"url": uri}})
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": [{"role": "user", "content": content}],
            "temperature": 0,
        }
        if response_format is not None:
            body["response_format"] = response_format
        message = await self._post(body)
        if "content" not in message:
            raise ServiceUnavailable("LLM endpoint gave a malformed answer")
        return str(message["content"]).strip()

    async def call_tool(self, prompt: str, text: str, tool: dict[str, Any]) -> dict[str, Any]:
        """The arguments the model passes to ``tool``, which it is made to call.

        Args:
            prompt: The instruction (sent as the system message).
            text: The user's text.
            tool: One function tool, ``{"type": "function", "function": {"name",
                "description", "parameters", "strict": True}}``.

        Returns:
            The parsed JSON arguments of the first call to that tool.

        Raises:
            EgressRefused: The endpoint's URL is not allowed.
            ServiceUnavailable: The endpoint is unreachable, answers an HTTP error, or
                its answer holds no call to the tool with JSON object arguments.
        """
        name = tool["function"]["name"]
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": [
                {"role": "system", "content": prompt},
                {"role": "user", "content": text},
            ],
            "tools": [tool],
            "tool_choice": {"type": "function", "function": {"name": name}},
            "temperature": 0,
        }
        message = await self._post(body)
        try:
            call = next(c for c in message["tool_calls"] if c["function"]["name"] == name)
            args = json.loads(call["function"]["arguments"])
        except (KeyError, TypeError, StopIteration, ValueError) as exc:
            raise ServiceUnavailable(f"LLM endpoint did not call {name}") from exc
        if not isinstance(args, dict):
            raise ServiceUnavailable(f"LLM endpoint called {name} without an arguments object")
        return args

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST a chat completion; the first choice's message."""
        url = f"{str(self.settings.base_url).rstrip('/')}/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        target = self.egress.check(url)
        pinned, host, extensions = pinned_request_args(target, url)
        try:
            async with httpx.AsyncClient(**self.egress.client_kwargs()) as client:
                r = await client.post(
                    pinned,
                    json=body,
                    headers={**headers, **host},
                    extensions=extensions,
                    timeout=self.settings.timeout_s,
                )
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"LLM endpoint unreachable: {type(exc).__name__}") from exc
        if r.status_code >= 400:
            raise ServiceUnavailable(f"LLM endpoint answered HTTP {r.status_code}")
        try:
            message = r.json()["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ServiceUnavailable("LLM endpoint gave a malformed answer") from exc
        if not isinstance(message, dict):
            raise ServiceUnavailable("LLM endpoint gave a malformed answer")
        return message
