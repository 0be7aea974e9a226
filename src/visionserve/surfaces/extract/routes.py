"""extract's routes (thin) and its contract's error body."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from visionserve.api.surface import Ctx, CurrentPrincipal, Principal
from visionserve.errors import BadRequest, VisionServeError
from visionserve.platform.context import AppContext
from visionserve.surfaces.extract import schemas as x
from visionserve.surfaces.extract.ingest import IngestService, Upload
from visionserve.surfaces.extract.service import ExtractService

# The platform's generic codes in the contract's words.
_CODES = {
    "validation_error": "invalid_request",
    "missing_image": "invalid_request",
    "invalid_base64": "invalid_image",
    "invalid_format": "invalid_image",
    "rate_limited": "rate_limit_exceeded",
    "payload_too_large": "payload_too_large",
}


def render_error(err: VisionServeError, request_id: str) -> JSONResponse:
    """``{"success": false, "error": {"code", "message"}}`` as the contract shows."""
    error: dict[str, Any] = {"code": _CODES.get(err.code, err.code), "message": err.message}
    if err.details:
        error["details"] = err.details
    return JSONResponse({"success": False, "error": error}, status_code=err.status)


def owner(who: Principal) -> str:
    return who.key.id if who.key is not None else "anonymous"


def ok(data: BaseModel, status: int = 200, *, success: bool = True) -> JSONResponse:
    """The contract's envelope; a model's unset fields (other statuses' fields) left out."""
    body = {
        "success": success,
        "data": data.model_dump(mode="json", by_alias=True, exclude_unset=True),
    }
    return JSONResponse(body, status_code=status)


_ERRORS: dict[int | str, Any] = {
    400: {
        "model": x.ErrorEnvelope,
        "description": "invalid_request / invalid_schema / invalid_image",
    },
    401: {"model": x.ErrorEnvelope, "description": "Missing or unknown API key"},
    404: {"model": x.ErrorEnvelope, "description": "Not found (or not yours)"},
    429: {"model": x.ErrorEnvelope, "description": "rate_limit_exceeded (see Retry-After)"},
    "default": {"model": x.ErrorEnvelope, "description": "Internal error or at capacity"},
}


def _doc(model: Any, status: int = 200) -> dict[int | str, Any]:
    return {status: {"model": model}, **_ERRORS}


_INGEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": x.IngestRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "metadata": {"type": "string", "description": "a JSON object"},
                        "priority": {"type": "string", "enum": ["normal", "high"]},
                    },
                }
            },
        },
    }
}


async def _ingest_input(request: Request) -> tuple[Upload, dict[str, Any] | None, str]:
    """The upload, metadata and priority from a JSON body or a multipart form."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise BadRequest("Multipart ingest needs a 'file' part", code="invalid_request")
        raw = form.get("metadata")
        fields: dict[str, Any] = {"priority": form.get("priority") or "normal"}
        if isinstance(raw, str) and raw.strip():
            try:
                fields["metadata"] = json.loads(raw)
            except json.JSONDecodeError:
                raise BadRequest("metadata must be a JSON object", code="invalid_request") from None
        body = _validated(fields)
        data = await file.read()
        return Upload(data=data, file_name=file.filename), body.metadata, body.priority
    try:
        payload = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest(
            "Send a JSON body (image_url or image_base64) or a multipart file",
            code="invalid_request",
        ) from None
    if not isinstance(payload, dict):
        raise BadRequest("The body must be a JSON object", code="invalid_request")
    body = _validated(payload)
    return Upload(url=body.image_url, base64=body.image_base64), body.metadata, body.priority


def _validated(fields: dict[str, Any]) -> x.IngestRequest:
    try:
        return x.IngestRequest.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


def router(ctx: AppContext) -> APIRouter:
    r = APIRouter()

    def service(app: AppContext) -> ExtractService:
        return ExtractService(app.settings)

    # --- patterns ----------------------------------------------------------------------

    @r.get("/patterns", tags=["patterns"], responses=_doc(x.Envelope[x.PatternList]))
    async def list_patterns(
        app: Ctx,
        who: CurrentPrincipal,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        status: x.PatternStatus | None = None,
    ) -> JSONResponse:
        data = await asyncio.to_thread(
            service(app).list_patterns, owner(who), page=page, limit=limit, status=status
        )
        return ok(data)

    @r.post(
        "/patterns",
        status_code=201,
        tags=["patterns"],
        responses=_doc(x.Envelope[x.PatternCreated], 201),
    )
    async def create_pattern(
        body: x.CreatePattern, app: Ctx, who: CurrentPrincipal
    ) -> JSONResponse:
        data = await asyncio.to_thread(service(app).create_pattern, owner(who), body)
        return ok(data, 201)

    @r.get("/patterns/{pattern_id}", tags=["patterns"], responses=_doc(x.Envelope[x.PatternDetail]))
    async def get_pattern(pattern_id: str, app: Ctx, who: CurrentPrincipal) -> JSONResponse:
        return ok(await asyncio.to_thread(service(app).get_pattern, owner(who), pattern_id))

    @r.patch(
        "/patterns/{pattern_id}", tags=["patterns"], responses=_doc(x.Envelope[x.PatternUpdated])
    )
    async def update_pattern(
        pattern_id: str, body: x.UpdatePattern, app: Ctx, who: CurrentPrincipal
    ) -> JSONResponse:
        data = await asyncio.to_thread(service(app).update_pattern, owner(who), pattern_id, body)
        return ok(data)

    @r.delete("/patterns/{pattern_id}", tags=["patterns"], responses=_doc(x.Message))
    async def delete_pattern(pattern_id: str, app: Ctx, who: CurrentPrincipal) -> x.Message:
        await asyncio.to_thread(service(app).delete_pattern, owner(who), pattern_id)
        return x.Message(message="Pattern deleted successfully")

    @r.post(
        "/patterns/{pattern_id}/ingest",
        tags=["ingest"],
        openapi_extra=_INGEST_BODY,
        responses={
            200: {"model": x.Envelope[x.JobView], "description": "Finished within the sync window"},
            202: {"model": x.Envelope[x.JobView], "description": "Queued"},
            **_ERRORS,
        },
    )
    async def ingest(
        pattern_id: str, request: Request, app: Ctx, who: CurrentPrincipal
    ) -> JSONResponse:
        """Image URL, base64 or multipart ``file``: JPG, PNG, WEBP, TIFF or PDF."""
        pattern = await asyncio.to_thread(service(app).pattern_for_ingest, owner(who), pattern_id)
        upload, metadata, priority = await _ingest_input(request)
        status, view = await IngestService(app.settings, app.blobs, app.egress).ingest(
            owner(who), pattern, upload, metadata, priority
        )
        return ok(view, status, success=view.status != "failed")

    # --- jobs ----------------------------------------------------------------------------

    @r.get("/jobs/{job_id}", tags=["jobs"], responses=_doc(x.Envelope[x.JobView]))
    async def get_job(job_id: str, app: Ctx, who: CurrentPrincipal) -> JSONResponse:
        view = await asyncio.to_thread(service(app).get_job, owner(who), job_id)
        return ok(view, success=view.status != "failed")

    @r.get("/jobs", tags=["jobs"], responses=_doc(x.Envelope[x.JobList]))
    async def list_jobs(
        app: Ctx,
        who: CurrentPrincipal,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        status: x.JobStatus | None = None,
        pattern_id: str | None = None,
    ) -> JSONResponse:
        data = await asyncio.to_thread(
            service(app).list_jobs,
            owner(who),
            page=page,
            limit=limit,
            status=status,
            pattern_id=pattern_id,
        )
        return ok(data)

    # --- webhooks ------------------------------------------------------------------------

    @r.get("/webhooks", tags=["webhooks"], responses=_doc(x.Envelope[x.WebhookList]))
    async def list_webhooks(app: Ctx, who: CurrentPrincipal) -> JSONResponse:
        return ok(await asyncio.to_thread(service(app).list_webhooks, owner(who)))

    @r.post(
        "/webhooks",
        status_code=201,
        tags=["webhooks"],
        responses=_doc(x.Envelope[x.WebhookView], 201),
    )
    async def create_webhook(
        body: x.CreateWebhook, app: Ctx, who: CurrentPrincipal
    ) -> JSONResponse:
        data = await asyncio.to_thread(service(app).create_webhook, owner(who), body)
        return ok(data, 201)

    @r.delete("/webhooks/{webhook_id}", tags=["webhooks"], responses=_doc(x.Message))
    async def delete_webhook(webhook_id: str, app: Ctx, who: CurrentPrincipal) -> x.Message:
        await asyncio.to_thread(service(app).delete_webhook, owner(who), webhook_id)
        return x.Message(message="Webhook deleted successfully")

    return r
