"""documents: OCR → layout → chunking with the task API (contract: chunkr-api.md)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from visionserve import __version__
from visionserve.api.context import AppContext
from visionserve.api.surface import Ctx, CurrentPrincipal, Surface
from visionserve.errors import BadRequest, Unauthorized, VisionServeError
from visionserve.schemas import documents as d
from visionserve.services.documents import DocumentService

# The contract's own messages for the platform's generic errors.
_MESSAGES = {
    "rate_limit_exceeded": "Usage limit exceeded",
    "rate_limited": "Usage limit exceeded",
    "usage_limit_exceeded": "Usage limit exceeded",
    "invalid_base64": "Invalid base64 data",
}


def render_error(err: VisionServeError, request_id: str) -> JSONResponse:
    """The contract's error body is a bare JSON string."""
    return JSONResponse(_MESSAGES.get(err.code, err.message), status_code=err.status)


def service(ctx: AppContext) -> DocumentService:
    return DocumentService(ctx.settings, ctx.blobs, ctx.egress)


def owner(who: Any) -> str:
    if who.key is None:  # auth mode "off": one shared anonymous account
        return "anonymous"
    return str(who.key.id)


def _config_from_form(configuration: str | None) -> dict[str, Any]:
    if not configuration:
        return {}
    try:
        value = json.loads(configuration)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"configuration is not valid JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise BadRequest("configuration must be a JSON object")
    return value


def _validated(model: Any, value: dict[str, Any]) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"{where}: {first['msg']}") from exc


def router(ctx: AppContext) -> APIRouter:
    r = APIRouter(prefix="/api/v1", tags=["tasks"])

    @r.post("/task/parse", response_model=d.TaskResponse)
    async def create_task(body: d.CreateTask, app: Ctx, who: CurrentPrincipal) -> d.TaskResponse:
        """Create a parse task from a URL or base64 file; poll GET /task/{task_id}."""
        svc = service(app)
        data, url = await svc.read_file(body.file)
        config = d.Configuration.model_validate(body.model_dump(exclude={"file", "file_name"}))
        return await svc.create(owner(who), data, body.file_name, config, url)

    @r.post("/task", response_model=d.TaskResponse, deprecated=True)
    async def create_task_multipart(
        app: Ctx,
        who: CurrentPrincipal,
        file: Annotated[UploadFile, File()],
        configuration: Annotated[str | None, Form()] = None,
    ) -> d.TaskResponse:
        """Deprecated: multipart upload; use POST /task/parse."""
        config = _validated(d.Configuration, _config_from_form(configuration))
        data = await file.read(app.settings.limits.max_download_bytes + 1)
        if len(data) > app.settings.limits.max_download_bytes:
            raise BadRequest("File too large")
        return await service(app).create(owner(who), data, file.filename, config)

    @r.get("/task/{task_id}", response_model=d.TaskResponse)
    async def get_task(
        task_id: str,
        app: Ctx,
        who: CurrentPrincipal,
        base64_urls: bool = False,
        include_chunks: bool = True,
    ) -> d.TaskResponse:
        return await asyncio.to_thread(
            service(app).get,
            task_id,
            owner(who),
            include_chunks=include_chunks,
            base64_urls=base64_urls,
        )

    @r.patch("/task/{task_id}/parse", response_model=d.TaskResponse)
    async def update_task(
        task_id: str, body: d.UpdateTask, app: Ctx, who: CurrentPrincipal
    ) -> d.TaskResponse:
        """Reprocess with a different configuration (from Succeeded or Failed only)."""
        return await asyncio.to_thread(service(app).update, task_id, owner(who), body)

    @r.patch("/task/{task_id}", response_model=d.TaskResponse, deprecated=True)
    async def update_task_multipart(
        task_id: str,
        app: Ctx,
        who: CurrentPrincipal,
        configuration: Annotated[str | None, Form()] = None,
    ) -> d.TaskResponse:
        """Deprecated: multipart update; use PATCH /task/{task_id}/parse."""
        change = _validated(d.UpdateTask, _config_from_form(configuration))
        return await asyncio.to_thread(service(app).update, task_id, owner(who), change)

    @r.delete("/task/{task_id}")
    async def delete_task(task_id: str, app: Ctx, who: CurrentPrincipal) -> str:
        return await asyncio.to_thread(service(app).delete, task_id, owner(who))

    @r.get("/task/{task_id}/cancel")
    async def cancel_task(task_id: str, app: Ctx, who: CurrentPrincipal) -> str:
        return await asyncio.to_thread(service(app).cancel, task_id, owner(who))

    @r.get("/tasks", response_model=list[d.TaskResponse])
    async def list_tasks(
        app: Ctx,
        who: CurrentPrincipal,
        page: Annotated[int | None, Query(ge=1)] = None,
        limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
        start: datetime | None = None,
        end: datetime | None = None,
        base64_urls: bool = False,
        include_chunks: bool = False,
    ) -> list[d.TaskResponse]:
        return await asyncio.to_thread(
            service(app).list,
            owner(who),
            page=page,
            limit=limit,
            start=start,
            end=end,
            include_chunks=include_chunks,
            base64_urls=base64_urls,
        )

    @r.get("/usage/monthly", response_model=d.MonthlyUsage)
    async def monthly_usage(app: Ctx, who: CurrentPrincipal) -> d.MonthlyUsage:
        return await asyncio.to_thread(service(app).usage, owner(who))

    @r.get("/user")
    async def user(app: Ctx, who: CurrentPrincipal) -> dict[str, Any]:
        """The caller, as the contract's user object (self-hosted tier)."""
        if who.key is None:
            raise Unauthorized("Missing API key")
        usage = await asyncio.to_thread(service(app).usage, owner(who))
        return {
            "user_id": who.key.id,
            "customer_id": None,
            "email": None,
            "first_name": who.key.name,
            "last_name": None,
            "api_keys": [f"vs_{who.key.id}_…"],
            "tier": "SelfHosted",
            "created_at": who.key.created_at,
            "updated_at": who.key.created_at,
            "usage": [{"usage_type": "Page", "usage_limit": usage.usage_limit, "overage_usage": 0}],
            "task_count": 0,
            "last_paid_status": None,
        }

    return r


def public_router(ctx: AppContext) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health")
    async def health() -> str:
        return f"OK - Version {__version__}"

    @router.get("/llm/models")
    async def llm_models() -> list[dict[str, str]]:
        """The LLM configured for llm_processing, if any."""
        if not ctx.settings.llm.base_url:
            return []
        return [{"id": ctx.settings.llm.model, "name": ctx.settings.llm.model}]

    return router


SURFACE = Surface(
    name="documents",
    mount="/documents",
    title="documents",
    description="Document parsing: OCR, layout segments and chunks, as async tasks.",
    render_error=render_error,
    routers=(router,),
    public_routers=(public_router,),
    requires_key=True,
    # Clients poll GET /task/{id}; the contract's own limit is pages per month.
    rate_limit_per_minute=1200,
    validation_status=422,
    job_modules=("visionserve.services.documents",),
)
