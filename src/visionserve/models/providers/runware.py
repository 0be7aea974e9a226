"""Runware background removal over its HTTP REST API.

Protocol (https://runware.ai/docs/en/tools/remove-background and
https://runware.ai/docs/platform/errors): POST a JSON *array* of tasks to
``https://api.runware.ai/v1`` with ``Authorization: Bearer <key>``; a
``removeBackground`` task takes ``inputImage`` as a data URI, so no public URL of
the input is needed. The answer is ``{"data": [{"taskUUID", "imageBase64Data" |
"imageURL", "cost", ...}]}``, with ``cost`` in USD when ``includeCost`` is set; a
failure is ``{"errors": [{"code", "message", "parameter", "taskType", "taskUUID"}]}``
with an HTTP status (400, 401, 402, 403, 429, 5xx).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

import httpx

from visionserve.models.providers.base import HttpRemover, data_uri
from visionserve.platform.egress import EgressPolicy
from visionserve.settings import MB

# The documented task name; "imageBackgroundRemoval" is its older alias.
TASK_TYPE = "removeBackground"


class RunwareRemover(HttpRemover):
    """One Runware background-removal model, named by its AIR id.

    Args:
        api_key: The Runware API key.
        model_air: The model's AIR id, e.g. ``"bria:2@1"`` (Bria RMBG v2.0).
        model_id: Our stable id for the model, e.g. ``"runware_rmbg2"``.
        model_name: The display name, e.g. ``"Runware RMBG 2.0"``.
        base_url: The REST endpoint.
        http: A client to share; by default one client per call.
        egress: The policy an ``imageURL`` in a response must pass.
        max_result_bytes: The largest result image accepted.
    """

    provider = "Runware"

    def __init__(
        self,
        api_key: str,
        model_air: str,
        model_id: str,
        model_name: str,
        base_url: str = "https://api.runware.ai/v1",
        http: httpx.AsyncClient | None = None,
        *,
        egress: EgressPolicy | None = None,
        max_result_bytes: int = 50 * MB,
    ) -> None:
        super().__init__(api_key, http=http, egress=egress, max_result_bytes=max_result_bytes)
        self.model_air = model_air
        self.model_id = model_id
        self.model_name = model_name
        self.base_url = base_url

    async def _run(self, client: httpx.AsyncClient, image_png: bytes) -> tuple[bytes, float]:
        task_uuid = str(uuid.uuid4())
        task = {
            "taskType": TASK_TYPE,
            "taskUUID": task_uuid,
            "model": self.model_air,
            "inputImage": data_uri(image_png),
            # Inline base64 saves a second round trip to Runware's CDN.
            "outputType": "base64Data",
            "outputFormat": "PNG",  # the one format that keeps the alpha channel
            "includeCost": True,
        }
        status, body = await self._call(client, "POST", self.base_url, json=[task])
        errors = body.get("errors") if isinstance(body, dict) else None
        if status >= 400 or errors:
            raise self._error(max(status, 400), _error_message(errors, body))
        item = self._find_task(body, task_uuid)
        return await self._image(item), _cost(item.get("cost"))

    def _find_task(self, body: Any, task_uuid: str) -> dict[str, Any]:
        # Results are matched by taskUUID, as the docs ask, not by position.
        data = body.get("data") if isinstance(body, dict) else None
        for item in data if isinstance(data, list) else []:
            if isinstance(item, dict) and item.get("taskUUID") == task_uuid:
                return item
        raise self._bad_response("no result for our task")

    async def _image(self, item: dict[str, Any]) -> bytes:
        encoded = item.get("imageBase64Data") or item.get("imageDataURI")
        if isinstance(encoded, str) and encoded:
            try:
                return base64.b64decode(encoded.partition(",")[2] or encoded, validate=True)
            except (binascii.Error, ValueError):
                raise self._bad_response("image data is not valid base64") from None
        url = item.get("imageURL")
        if isinstance(url, str) and url:
            return await self._download(url)
        raise self._bad_response("no image in the result")


def _error_message(errors: Any, body: Any) -> str:
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        code, message = first.get("code"), first.get("message")
        return f"{message} ({code})" if code and message else str(message or code or "")
    return body if isinstance(body, str) else ""


def _cost(value: Any) -> float:
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        return 0.0
