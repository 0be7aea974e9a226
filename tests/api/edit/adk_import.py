"""Run by the watsonx Orchestrate ADK's own interpreter (var/adk-venv): import tool documents.

    var/adk-venv/bin/python tests/api/edit/adk_import.py docs/watsonx/*.json

Prints, per document, what the ADK's OpenAPI importer made of it, as JSON on stdout.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from typing import Any

from ibm_watsonx_orchestrate.agent_builder.tools.openapi_tool import (
    create_openapi_json_tools_from_content,
)


async def tools_of(doc: dict[str, Any]) -> list[Any]:
    made = create_openapi_json_tools_from_content(doc)
    return list(await made if inspect.isawaitable(made) else made)


def summary(path: str) -> dict[str, Any]:
    with open(path) as fh:
        doc = json.load(fh)
    out = []
    for tool in asyncio.run(tools_of(doc)):
        spec = tool.__tool_spec__
        binding = spec.binding.openapi
        # An async tool's output is the callback's request body; a sync one's, the response.
        callback_body = (
            spec.output_schema.properties["__requestBody__"].model_dump(
                exclude_none=True, by_alias=True
            )
            if spec.is_async
            else None
        )
        out.append(
            {
                "name": spec.name,
                "is_async": spec.is_async,
                "http_method": binding.http_method,
                "http_path": binding.http_path,
                "servers": binding.servers,
                "callback_url": binding.callback.callback_url if binding.callback else None,
                "callback_method": binding.callback.method if binding.callback else None,
                "input": sorted(spec.input_schema.properties),
                "request_body": spec.input_schema.properties["__requestBody__"].model_dump(
                    exclude_none=True, by_alias=True
                ),
                "callback_body": callback_body,
            }
        )
    return {"path": path, "tools": out}


if __name__ == "__main__":
    print(json.dumps([summary(p) for p in sys.argv[1:]], default=str))
