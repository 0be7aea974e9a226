"""The watsonx Orchestrate tool documents (OpenAPI 3.0), kept by hand in docs/watsonx/.

FastAPI emits OpenAPI 3.1, which Orchestrate does not import; these documents are
written for it (one server URL, the ``callbackUrl`` header, a ``callbacks`` object
whose bodies are the contract's payloads) and tested with the ADK's own importer.
The surface serves them with the server URL set to where it runs.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from visionserve.errors import NotFound

NAMES = ("process_image_async_b64", "process_image_async", "batch_process_images")


def directory() -> Path:
    """docs/watsonx of the checkout this package runs from (editable install, Ray job)."""
    return Path(__file__).resolve().parents[4] / "docs" / "watsonx"


@lru_cache
def _read(name: str) -> dict[str, Any]:
    return json.loads((directory() / f"{name}.json").read_text())  # type: ignore[no-any-return]


def load(name: str, server_url: str | None = None) -> dict[str, Any]:
    """The document of operation ``name``; ``server_url`` replaces its one server.

    Raises:
        NotFound: No such document (the message lists them).
    """
    if name not in NAMES:
        raise NotFound(f"No tool document {name!r}; there are: {', '.join(NAMES)}")
    doc = copy.deepcopy(_read(name))
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
