"""Kie.ai's Recraft "remove background" model over its asynchronous jobs API.

Protocol (https://docs.kie.ai/market/recraft/remove-background,
https://docs.kie.ai/market/common/get-task-detail, https://docs.kie.ai/file-upload-api):
every call sends ``Authorization: Bearer <key>`` and answers a ``{"code", "msg",
"data"}`` envelope whose ``code`` is 200 on success (401, 402, 404, 422, 429, 455,
500, 505 otherwise). ``POST /api/v1/jobs/createTask`` with ``{"model":
"recraft/remove-background", "input": {"image": <url>}}`` returns ``data.taskId``;
``GET /api/v1/jobs/recordInfo?taskId=...`` reports ``data.state`` (``waiting``,
``queuing``, ``generating``, then ``success`` or ``fail``), with ``resultJson`` (a
JSON string holding ``resultUrls``) or ``failCode``/``failMsg``. The model only takes
an image URL; Kie.ai's File Upload API (``POST /api/file-base64-upload`` on
``https://kieai.redpandaai.co``) turns our bytes into one that expires after 3 days.
recordInfo reports no cost, so each task is billed at a configured flat price.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx

from visionserve.errors import Unprocessable
from visionserve.models.providers.base import HttpRemover, Publisher, data_uri
from visionserve.platform.egress import EgressPolicy
from visionserve.settings import MB

MODEL = "recraft/remove-background"
_PENDING = {"waiting", "queuing", "generating"}


class KieRecraftRemover(HttpRemover):
    """Recraft background removal through Kie.ai.

    Args:
        api_key: The Kie.ai API key.
        base_url: The jobs API.
        poll_interval_s: Pause between two ``recordInfo`` polls.
        cost_usd: The price of one task (Kie.ai's feed lists $0.005 per image).
        publish: Turns the input PNG into a URL Kie.ai can fetch (our blob store's
            signed URL); by default the image goes through Kie.ai's own File Upload API.
        upload_base_url: The File Upload API, used when no ``publish`` is given.
        model_id: Our stable id for the model.
        model_name: The display name.
        http: A client to share; by default one client per call.
        egress: The policy result URLs must pass.
        max_result_bytes: The largest result image accepted.
    """

    provider = "Kie.ai"
    # 455: under maintenance; 505: feature disabled. Neither is the image's fault.
    unavailable_codes = frozenset({455, 505})

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.kie.ai",
        poll_interval_s: float = 1.0,
        *,
        cost_usd: float = 0.005,
        publish: Publisher | None = None,
        upload_base_url: str = "https://kieai.redpandaai.co",
        model_id: str = "kie_recraft",
        model_name: str = "Kie.ai Recraft BG",
        http: httpx.AsyncClient | None = None,
        egress: EgressPolicy | None = None,
        max_result_bytes: int = 50 * MB,
    ) -> None:
        super().__init__(api_key, http=http, egress=egress, max_result_bytes=max_result_bytes)
        self.base_url = base_url.rstrip("/")
        self.upload_base_url = upload_base_url.rstrip("/")
        self.poll_interval_s = poll_interval_s
        self.cost_usd = cost_usd
        self.model_id = model_id
        self.model_name = model_name
        self._publish = publish

    async def _run(self, client: httpx.AsyncClient, image_png: bytes) -> tuple[bytes, float]:
        if self._publish is not None:
            image_url = await self._publish(image_png)
        else:
            image_url = await self._upload(client, image_png)
        created = await self._envelope(
            client,
            "POST",
            f"{self.base_url}/api/v1/jobs/createTask",
            json={"model": MODEL, "input": {"image": image_url}},
        )
        task_id = created.get("taskId")
        if not isinstance(task_id, str) or not task_id:
            raise self._bad_response("no taskId from createTask")
        result_url = await self._wait(client, task_id)
        return await self._download(result_url), self.cost_usd

    async def _upload(self, client: httpx.AsyncClient, image_png: bytes) -> str:
        data = await self._envelope(
            client,
            "POST",
            f"{self.upload_base_url}/api/file-base64-upload",
            json={
                "base64Data": data_uri(image_png),
                "uploadPath": "visionserve",
                # Same name, same file: a unique name keeps requests from overwriting
                # each other's input.
                "fileName": f"{uuid.uuid4().hex}.png",
            },
        )
        url = data.get("downloadUrl")
        if not isinstance(url, str) or not url:
            raise self._bad_response("no downloadUrl from the file upload")
        return url

    async def _wait(self, client: httpx.AsyncClient, task_id: str) -> str:
        """Poll recordInfo until the task ends; the first result URL.

        The caller's timeout bounds the loop.
        """
        url = f"{self.base_url}/api/v1/jobs/recordInfo"
        while True:
            record = await self._envelope(client, "GET", url, params={"taskId": task_id})
            state = record.get("state")
            if state == "success":
                return self._result_url(record.get("resultJson"))
            if state == "fail":
                why = record.get("failMsg") or record.get("failCode") or "no reason given"
                raise Unprocessable(
                    f"{self.provider} task failed: {self._scrub(str(why))}",
                    code="provider_rejected",
                    details={"provider": self.provider, "fail_code": record.get("failCode")},
                )
            if state not in _PENDING:
                raise self._bad_response(f"unknown task state {state!r}")
            await asyncio.sleep(self.poll_interval_s)

    def _result_url(self, result_json: Any) -> str:
        # Documented as a JSON *string*; accept an object too.
        try:
            result = json.loads(result_json) if isinstance(result_json, str) else result_json
        except json.JSONDecodeError:
            raise self._bad_response("resultJson is not JSON") from None
        urls = result.get("resultUrls") if isinstance(result, dict) else None
        if not isinstance(urls, list) or not urls or not isinstance(urls[0], str):
            raise self._bad_response("no resultUrls in resultJson")
        return urls[0]

    async def _envelope(
        self, client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
    ) -> dict[str, Any]:
        """One call; its ``data`` object, or the mapped error of a non-200 code.

        An error ``code`` in the envelope wins over an HTTP 200 or 4xx: the two need
        not agree.
        """
        status, body = await self._call(client, method, url, **kwargs)
        envelope = body if isinstance(body, dict) else {}
        code = envelope.get("code")
        if isinstance(code, int) and code != 200 and status < 500:
            status = code
        if status >= 400:
            message = envelope.get("msg") or envelope.get("message") or body
            raise self._error(status, message if isinstance(message, str) else "")
        if code != 200:
            raise self._bad_response("no success code in the answer")
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise self._bad_response("no data object in the answer")
        return data
