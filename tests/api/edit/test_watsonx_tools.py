"""The tool documents in docs/watsonx/ through the watsonx Orchestrate ADK's own importer.

The ADK (``ibm-watsonx-orchestrate==2.19.1``) pins a dependency tree of its own, so it
lives in its own virtualenv, ``var/adk-venv`` (``make adk-venv``; this module creates
it when it is missing, which takes a minute or two with pip's local index).
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from visionserve.surfaces.edit.schemas import (
    B64Completed,
    BatchCallback,
    CosCompleted,
    ImageFailed,
)
from visionserve.surfaces.edit.tool_documents import NAMES, directory

REPO = Path(__file__).resolve().parents[3]
ADK_VENV = REPO / "var" / "adk-venv"
ADK = "ibm-watsonx-orchestrate==2.19.1"
PAYLOADS = {
    "process_image_async_b64": [B64Completed, ImageFailed],
    "process_image_async": [CosCompleted, ImageFailed],
    "batch_process_images": [BatchCallback],
}


def ensure_adk_venv() -> Path:
    """var/adk-venv with the ADK installed (created once; a lock keeps workers apart)."""
    python = ADK_VENV / "bin" / "python"
    ADK_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(ADK_VENV.parent / "adk-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = ADK_VENV / ".installed"
        if not marker.exists():
            if not python.exists():
                subprocess.run([sys.executable, "-m", "venv", str(ADK_VENV)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", ADK],
                check=True,
                timeout=900,
            )
            marker.write_text(ADK)
    return python


@pytest.fixture(scope="module")
def imported() -> dict[str, dict[str, Any]]:
    """Each document as the ADK's importer turned it into tools."""
    python = ensure_adk_venv()
    paths = [str(directory() / f"{name}.json") for name in NAMES]
    run = subprocess.run(
        [str(python), str(Path(__file__).with_name("adk_import.py")), *paths],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return {Path(doc["path"]).stem: doc for doc in json.loads(run.stdout)}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_each_document_becomes_one_async_tool_with_its_callback(imported, name) -> None:  # type: ignore[no-untyped-def]
    (tool,) = imported[name]["tools"]
    assert tool["name"] == name and tool["is_async"] is True
    assert tool["http_method"] == "POST"
    assert tool["http_path"] == "/" + name.replace("_", "-")
    assert tool["servers"] == ["http://localhost:8000/edit"]
    assert tool["callback_url"] == "{$request.header.callbackUrl}"
    assert tool["callback_method"] == "POST"
    body = tool["request_body"]
    fields = {"prompt"} if "batch" in name else {"prompt", "filename", "image_base64"}
    assert set(body["properties"]) == fields
    assert "prompt" in body["required"]
    # The callback's body: exactly the contract's payloads, nothing more or less.
    callback = tool["callback_body"]
    variants = callback.get("oneOf", [callback])
    assert len(variants) == len(PAYLOADS[name])
    for variant, model in zip(variants, PAYLOADS[name], strict=True):
        assert set(variant["properties"]) == set(model.model_fields)
        required = {f for f, info in model.model_fields.items() if info.is_required()}
        assert required <= set(variant["required"])
        assert variant.get("additionalProperties", variant.get("additional_properties")) is False


@pytest.mark.slow
def test_a_document_without_callbacks_would_not_be_async(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The importer really reads ``callbacks``: without it the same operation is synchronous."""
    python = ensure_adk_venv()
    doc = json.loads((directory() / "process_image_async_b64.json").read_text())
    del doc["paths"]["/process-image-async-b64"]["post"]["callbacks"]
    path = tmp_path / "sync.json"
    path.write_text(json.dumps(doc))
    run = subprocess.run(
        [str(python), str(Path(__file__).with_name("adk_import.py")), str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (tool,) = json.loads(run.stdout)[0]["tools"]
    assert tool["is_async"] is False and tool["callback_body"] is None
