"""A product surface: a FastAPI sub-application with its contract's conventions.

Each surface owns its mount, its error body format, whether it requires an API key,
its rate limit and whether it honours ``Idempotency-Key``. The platform builds the
sub-app from this description so every surface gets the same auth, limits, request
ids and error mapping, each rendered in its own contract's format.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from visionserve.api.idempotency import IdempotencyMiddleware
from visionserve.api.middleware import ErrorRenderer, add_response_headers, state
from visionserve.errors import (
    BadRequest,
    NotFound,
    RateLimited,
    Unauthorized,
    VisionServeError,
    public_failure,
)
from visionserve.platform.context import AppContext
from visionserve.store.keys import KeyInfo

log = logging.getLogger(__name__)

RouterFactory = Callable[[AppContext], APIRouter]


@dataclass(frozen=True)
class Surface:
    """How one product surface is served; see ``visionserve.surfaces``."""

    name: str
    mount: str
    title: str
    render_error: ErrorRenderer
    routers: tuple[RouterFactory, ...] = ()
    # Routers a client may call without a key even where the surface requires one.
    public_routers: tuple[RouterFactory, ...] = ()
    requires_key: bool = False
    # The contract's requests per minute; ``limits.rate_limits[name]`` overrides it.
    rate_limit_per_minute: int | None = None
    idempotency: bool = False
    # Status for malformed request bodies: 422 in most contracts, 400 in some.
    validation_status: int = 422
    description: str = ""
    # JSON Schema of the contract's error body: the OpenAPI document declares it for
    # invalid requests (instead of FastAPI's HTTPValidationError) and as ``default``.
    error_schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key, or anonymous where the surface allows it."""

    key: KeyInfo | None

    @property
    def id(self) -> str:
        return self.key.id if self.key else "anonymous"


def get_context(request: Request) -> AppContext:
    return request.app.state.ctx


def get_principal(request: Request) -> Principal:
    return request.scope["state"]["principal"]


Ctx = Annotated[AppContext, Depends(get_context)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def build_surface_app(surface: Surface, ctx: AppContext) -> Any:
    """The ASGI app mounted at ``surface.mount``."""
    app = FastAPI(
        title=f"VisionServe {surface.title}",
        description=surface.description,
        version="1.0.0",
    )
    app.state.ctx = ctx
    app.state.surface = surface
    for factory in surface.routers:
        app.include_router(factory(ctx), dependencies=[Depends(_guard(surface, public=False))])
    for factory in surface.public_routers:
        app.include_router(factory(ctx), dependencies=[Depends(_guard(surface, public=True))])
    _install_error_handlers(app, surface)
    if surface.error_schema is not None:
        _declare_error_bodies(app, surface, surface.error_schema)
    if surface.idempotency:
        return IdempotencyMiddleware(
            app,
            store=ctx.idempotency,
            on_error=lambda scope, status, code, message: surface.render_error(
                _error(status, code, message), state(scope).get("request_id", "-")
            ),
        )
    return app


def _declare_error_bodies(app: FastAPI, surface: Surface, schema: dict[str, Any]) -> None:
    """Make the OpenAPI document declare the error bodies this surface really sends.

    FastAPI declares every body-taking operation's 422 as ``HTTPValidationError``; a
    surface renders its own contract's body instead, and some answer 400. Routes that
    declare their own error responses keep them.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = generate()
        name = f"{surface.title.title()}Error"
        doc.setdefault("components", {}).setdefault("schemas", {})[name] = schema
        body = {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                default = responses.get("422", {}).get("content", {}).get("application/json", {})
                if default.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                    del responses["422"]
                    responses[str(surface.validation_status)] = {
                        "description": "Invalid request",
                        "content": body,
                    }
                responses.setdefault("default", {"description": "Any other error", "content": body})
        for unused in ("HTTPValidationError", "ValidationError"):
            if f"#/components/schemas/{unused}" not in json.dumps(doc):
                doc["components"]["schemas"].pop(unused, None)
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def _error(status: int, code: str, message: str) -> VisionServeError:
    err = VisionServeError(message, code=code)
    err.status = status
    return err


def requires_key(surface: Surface, ctx: AppContext) -> bool:
    mode = ctx.settings.auth.mode
    return mode == "all" or (mode == "contract" and surface.requires_key)


def surface_rate_limit(surface: Surface, ctx: AppContext) -> int:
    """Requests per minute: the operator's setting, else the contract's, else the default."""
    limits = ctx.settings.limits
    return (
        limits.rate_limits.get(surface.name)
        or surface.rate_limit_per_minute
        or limits.rate_limit_per_minute
    )


def _guard(surface: Surface, *, public: bool) -> Callable[..., Any]:
    """Authenticate, then apply the per-key (or per-IP) rate limit; runs before every route."""

    async def guard(request: Request) -> None:
        ctx: AppContext = request.app.state.ctx
        required = not public and requires_key(surface, ctx)
        key = await _authenticate(request, ctx, required=required)
        principal = Principal(key)
        request.scope["state"]["principal"] = principal
        if public:  # health and catalogue routes: probes must never be throttled
            return
        limit = (key.rate_limit_per_minute if key else None) or surface_rate_limit(surface, ctx)
        client = request.client.host if request.client else "unknown"
        bucket = f"{surface.name}:{principal.id if key else 'ip:' + client}"
        decision = await ctx.rate_limiter.hit(bucket, limit)
        add_response_headers(request.scope, decision.headers())
        if not decision.allowed:
            raise RateLimited(
                f"Rate limit exceeded: {limit} requests per minute; "
                f"retry in {decision.retry_after} s",
                code="rate_limit_exceeded",
                details={"limit_per_minute": limit, "retry_after_s": decision.retry_after},
                headers={"Retry-After": str(decision.retry_after)},
            )

    return guard


async def _authenticate(request: Request, ctx: AppContext, *, required: bool) -> KeyInfo | None:
    header = request.headers.get("authorization", "").strip()
    if not header:
        if required:
            raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'")
        return None
    token = _token(header)
    if token is None:
        if not required:  # e.g. a reverse proxy's Basic auth in front of a keyless surface
            return None
        raise Unauthorized("Malformed Authorization header: expected 'Bearer <key>'")
    hit = ctx.keys.cached(token)  # a busy client's key: no thread hop, no database
    if hit is not None:
        return hit
    try:
        return await asyncio.to_thread(ctx.keys.authenticate, token)
    except Unauthorized:
        if required:
            raise
        return None  # a surface without auth ignores a stale key rather than failing


def _token(header: str) -> str | None:
    """The key in ``Bearer <key>`` or a bare ``<key>``; None for any other form.

    The chunkr-ai SDK (0.3.x) sends ``Authorization: <key>`` with no scheme: one word
    is taken as the key itself; two words must be ``Bearer <key>`` (``Basic ...`` and
    the like stay malformed), and a lone ``Bearer`` is a header missing its key.
    """
    scheme, _, rest = header.partition(" ")
    if not rest.strip():
        return None if scheme.lower() == "bearer" else scheme
    return rest.strip() if scheme.lower() == "bearer" else None


def _install_error_handlers(app: FastAPI, surface: Surface) -> None:
    render = surface.render_error

    def rid(request: Request) -> str:
        return request.scope.get("state", {}).get("request_id", "-")

    @app.exception_handler(VisionServeError)
    async def _known(request: Request, exc: VisionServeError) -> Response:
        if exc.status >= 500:
            log.error("%s: %s", exc.code, exc.message)
        response = render(exc, rid(request))
        response.headers.update(exc.headers)
        if exc.status == 429 and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = "60"
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = (
            f"{where}: {first.get('msg', 'invalid request')}"
            if where
            else first.get("msg", "invalid request")
        )
        err = BadRequest(
            message,
            details={
                "field": where or None,
                "errors": [
                    {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
                    for e in errors
                ],
            },
        )
        err.status = surface.validation_status
        return render(err, rid(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        err: VisionServeError
        if exc.status_code == 404:
            err = NotFound("Not Found")
        else:
            err = _error(exc.status_code, "http_error", str(exc.detail))
        return render(err, rid(request))

    app.add_middleware(LastResortMiddleware, render=render)


class LastResortMiddleware:
    """Turns an unhandled exception into the surface's 500 (or 503 for back-pressure).

    Sits inside Starlette's ServerErrorMiddleware, so the exception is logged once
    here and internals never reach the client.
    """

    def __init__(self, app: Any, render: ErrorRenderer) -> None:
        self.app = app
        self.render = render

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            request_id = state(scope).get("request_id", "-")
            # Serve back-pressure becomes a 503; anything else a 500 whose message
            # names the request id, with the whole exception in the log under it.
            err = public_failure(exc, ref=f"request {request_id}", logger=log).error()
            if err.category == "unavailable":
                err.headers["Retry-After"] = "1"
            response = self.render(err, request_id)
            response.headers.update(err.headers)
            await response(scope, receive, send)
