"""documents: OCR → layout → chunking with the task API (contract: chunkr-api.md)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from visionserve import __version__
from visionserve.api.surface import Ctx, CurrentPrincipal
from visionserve.errors import BadRequest, Unauthorized, VisionServeError
from visionserve.platform.context import AppContext
from visionserve.settings import Settings
from visionserve.surfaces.documents import schemas as d
from visionserve.surfaces.documents.service import DocumentService

# The contract's own messages for the platform's generic errors.
_MESSAGES = {
    "rate_limited": "Usage limit exceeded",
    "invalid_base64": "Invalid base64 data",
}
_DEFAULT_PUBLIC_URL = Settings.model_fields["public_url"].default


def render_error(err: VisionServeError, request_id: str) -> JSONResponse:
    """The contract's error body is a bare JSON string.

    Both 429s start with the contract's "Usage limit exceeded" and then say which limit
    was hit: the per-minute rate limit or the monthly page quota.
    """
    message = _MESSAGES.get(err.code, err.message)
    if err.code == "rate_limit_exceeded":
        message = f"Usage limit exceeded: {err.message[0].lower()}{err.message[1:]}"
    return JSONResponse(message, status_code=err.status)


def api_url(request: Request, settings: Settings) -> str:
    """Where this client reaches the task API: the base of every ``task_url``.

    The chunkr-ai SDK polls, updates, cancels and deletes through ``task_url``, so it must
    be reachable by the client. The operator's ``public_url`` says so when set; left at
    its default (loopback, port 8000) the URL this request came in on is the better
    guess: a client on another host, or a cluster on another port, can reach that one.
    """
    if settings.public_url != _DEFAULT_PUBLIC_URL:
        return f"{settings.public_url.rstrip('/')}{request.app.state.surface.mount}"
    # The sub-app's root_path is the mount (after any outer root path): /documents.
    here = request.url.replace(path=request.scope.get("root_path", ""), query="", fragment="")
    return str(here).rstrip("/")


def get_service(request: Request, app: Ctx) -> DocumentService:
    return DocumentService(
        app.settings, app.blobs, app.egress, app.queue, api_url=api_url(request, app.settings)
    )


Service = Annotated[DocumentService, Depends(get_service)]


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
    """A multipart ``configuration`` validated like a JSON body: refused with the same 422."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


# What each operation answers besides its 200, all with the contract's string body.
_ANSWERS = {
    400: "Bad request",
    401: "Missing, malformed or unknown API key",
    404: "Task not found",
    413: "Request body or file too large",
    422: 'Invalid request: its first problem, as "<field>: <message>"',
    429: (
        "Usage limit exceeded: the key's rate limit or, creating or reprocessing a task, "
        "the monthly page limit (see Retry-After)"
    ),
}
_CREATE_400 = (
    "Invalid file (unsupported type, invalid base64, a URL refused or unreachable), "
    "too many pages, or a tokenizer that is not installed"
)
_UPDATE_400 = (
    "Task cannot be updated: it is not Succeeded or Failed, the configuration is "
    "unchanged, or its tokenizer is not installed"
)


def _answers(*statuses: int, bad_request: str | None = None) -> dict[int | str, Any]:
    """OpenAPI ``responses``: ``statuses`` plus 401 and 429 (every route is keyed and
    rate limited) and ``default`` for a 500 or 503, each a bare JSON string.

    Declaring them (422 among them) keeps FastAPI's ``HTTPValidationError``, a body
    this surface never sends, out of the document.
    """
    out: dict[int | str, Any] = {
        status: {
            "model": d.ErrorMessage,
            "description": bad_request if status == 400 and bad_request else _ANSWERS[status],
        }
        for status in sorted({*statuses, 401, 429})
    }
    out["default"] = {
        "model": d.ErrorMessage,
        "description": "Internal error (500) or the cluster at capacity (503, Retry-After)",
    }
    return out


def router(ctx: AppContext) -> APIRouter:
    """The task API under both of chunkr's prefixes.

    The contract (and chunkr-ai 0.1) call ``{base}/api/v1/task/...``; chunkr-ai 0.3
    calls ``{base}/task/...``. Served at both, a client's base URL is
    ``http://host:8000/documents`` whichever it is (``.../documents/api/v1`` works too).
    """
    tasks = _task_router()
    both = APIRouter()
    both.include_router(tasks, prefix="/api/v1", tags=["tasks"])
    both.include_router(tasks, tags=["tasks (chunkr-ai 0.3 paths, no /api/v1)"])
    return both


def _task_router() -> APIRouter:
    r = APIRouter()

    @r.post(
        "/task/parse",
        response_model=d.TaskResponse,
        responses=_answers(400, 413, 422, bad_request=_CREATE_400),
    )
    async def create_task(
        body: d.CreateTask, svc: Service, who: CurrentPrincipal
    ) -> d.TaskResponse:
        """Create a parse task from a URL or base64 file; poll GET /task/{task_id}."""
        data, url = await svc.read_file(body.file)
        config = d.Configuration.model_validate(body.model_dump(exclude={"file", "file_name"}))
        return await svc.create(owner(who), data, body.file_name, config, url)

    @r.post(
        "/task",
        response_model=d.TaskResponse,
        deprecated=True,
        responses=_answers(
            400,
            413,
            422,
            bad_request=f"{_CREATE_400}; or a configuration that is not a JSON object",
        ),
    )
    async def create_task_multipart(
        app: Ctx,
        svc: Service,
        who: CurrentPrincipal,
        file: Annotated[UploadFile, File()],
        configuration: Annotated[str | None, Form()] = None,
    ) -> d.TaskResponse:
        """Deprecated: multipart upload; use POST /task/parse."""
        config = _validated(d.Configuration, _config_from_form(configuration))
        data = await file.read(app.settings.limits.max_download_bytes + 1)
        if len(data) > app.settings.limits.max_download_bytes:
            raise BadRequest("File too large")
        return await svc.create(owner(who), data, file.filename, config)

    @r.get("/task/{task_id}", response_model=d.TaskResponse, responses=_answers(404, 422))
    async def get_task(
        task_id: str,
        svc: Service,
        who: CurrentPrincipal,
        base64_urls: bool = False,
        include_chunks: bool = True,
    ) -> d.TaskResponse:
        return await asyncio.to_thread(
            svc.get,
            task_id,
            owner(who),
            include_chunks=include_chunks,
            base64_urls=base64_urls,
        )

    @r.patch(
        "/task/{task_id}/parse",
        response_model=d.TaskResponse,
        responses=_answers(400, 404, 413, 422, bad_request=_UPDATE_400),
    )
    async def update_task(
        task_id: str, body: d.UpdateTask, svc: Service, who: CurrentPrincipal
    ) -> d.TaskResponse:
        """Reprocess with a different configuration (from Succeeded or Failed only)."""
        return await asyncio.to_thread(svc.update, task_id, owner(who), body)

    @r.patch(
        "/task/{task_id}",
        response_model=d.TaskResponse,
        deprecated=True,
        responses=_answers(
            400,
            404,
            413,
            422,
            bad_request=f"{_UPDATE_400}; or a configuration that is not a JSON object",
        ),
    )
    async def update_task_multipart(
        task_id: str,
        svc: Service,
        who: CurrentPrincipal,
        configuration: Annotated[str | None, Form()] = None,
    ) -> d.TaskResponse:
        """Deprecated: multipart update; use PATCH /task/{task_id}/parse."""
        change = _validated(d.UpdateTask, _config_from_form(configuration))
        return await asyncio.to_thread(svc.update, task_id, owner(who), change)

    @r.delete(
        "/task/{task_id}",
        responses={
            200: {"content": {"application/json": {"example": "Task deleted"}}},
            **_answers(
                400, 404, bad_request="Task cannot be deleted: status is Starting or Processing"
            ),
        },
    )
    async def delete_task(task_id: str, svc: Service, who: CurrentPrincipal) -> str:
        return await asyncio.to_thread(svc.delete, task_id, owner(who))

    @r.get(
        "/task/{task_id}/cancel",
        responses={
            200: {"content": {"application/json": {"example": "Task cancelled"}}},
            **_answers(400, 404, bad_request="Task cannot be cancelled: it is no longer Starting"),
        },
    )
    async def cancel_task(task_id: str, svc: Service, who: CurrentPrincipal) -> str:
        return await asyncio.to_thread(svc.cancel, task_id, owner(who))

    @r.get(
        "/tasks",
        response_model=list[d.TaskResponse],
        responses=_answers(400, 422, bad_request="limit is required when page is provided"),
    )
    async def list_tasks(
        svc: Service,
        who: CurrentPrincipal,
        page: Annotated[int | None, Query(ge=1)] = None,
        limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
        start: datetime | None = None,
        end: datetime | None = None,
        base64_urls: bool = False,
        include_chunks: bool = False,
    ) -> list[d.TaskResponse]:
        return await asyncio.to_thread(
            svc.list,
            owner(who),
            page=page,
            limit=limit,
            start=start,
            end=end,
            include_chunks=include_chunks,
            base64_urls=base64_urls,
        )

    @r.get("/usage/monthly", response_model=d.MonthlyUsage, responses=_answers())
    async def monthly_usage(svc: Service, who: CurrentPrincipal) -> d.MonthlyUsage:
        return await asyncio.to_thread(svc.usage, owner(who))

    @r.get("/user", responses=_answers())
    async def user(svc: Service, who: CurrentPrincipal) -> dict[str, Any]:
        """The caller, as the contract's user object (self-hosted tier)."""
        if who.key is None:
            raise Unauthorized("Missing API key")
        usage = await asyncio.to_thread(svc.usage, owner(who))
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
