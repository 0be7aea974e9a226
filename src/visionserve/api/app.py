"""The ingress app factory: platform routes plus one mounted sub-app per surface."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from visionserve import __version__
from visionserve.api.metrics import RequestMetricsMiddleware
from visionserve.api.middleware import ErrorRenderer, RequestContextMiddleware
from visionserve.api.surface import Surface, build_surface_app
from visionserve.console import PAGES, STATIC_DIR
from visionserve.errors import Forbidden, NotFound, VisionServeError
from visionserve.platform.context import AppContext
from visionserve.platform.scaling import scaling
from visionserve.store.blobs import LocalBlobStore
from visionserve.store.db import ping as ping_database

log = logging.getLogger(__name__)


def render_platform_error(err: VisionServeError, request_id: str) -> JSONResponse:
    """Platform routes (health, blobs, admin) answer ``{"detail", "code"}``."""
    return JSONResponse(
        {"detail": err.message, "code": err.code, "request_id": request_id},
        status_code=err.status,
    )


def create_app(
    ctx: AppContext, surfaces: Iterable[Surface], *, behind_serve_proxy: bool = False
) -> FastAPI:
    """Build the ingress ASGI app.

    Args:
        ctx: services shared by every route (settings, stores, Serve handles).
        surfaces: the enabled product surfaces; each is mounted at its ``mount``.
        behind_serve_proxy: Serve's proxy sets X-Request-ID itself; don't add a second.
    """
    surfaces = sorted(surfaces, key=lambda s: len(s.mount), reverse=True)
    app = FastAPI(
        title="VisionServe",
        version=__version__,
        description="Platform routes. Each surface has its own docs at <mount>/docs.",
    )
    app.state.ctx = ctx

    def renderer_for(path: str) -> ErrorRenderer:
        for surface in surfaces:
            if path == surface.mount or path.startswith(surface.mount + "/"):
                return surface.render_error
        return render_platform_error

    @app.exception_handler(VisionServeError)
    async def _known(request: Request, exc: VisionServeError) -> Response:
        rid = request.scope.get("state", {}).get("request_id", "-")
        return render_platform_error(exc, rid)

    @app.get("/health", tags=["platform"])
    async def health() -> dict[str, object]:
        """Liveness: the ingress answers; lists every deployment's Serve state.

        ``replicas`` counts each deployment's replicas by state (a lost node shows as
        fewer RUNNING, then STARTING ones elsewhere); ``messages`` says why a deployment
        is not healthy, e.g. that a new replica waits for resources no node has;
        ``scaling`` tells a healthy resize (``up``, ``down``) from one that is ``stuck``
        waiting for resources (or ``slow`` to start), with the reason.
        """
        deployments = await ctx.cluster_status()
        replicas = await ctx.cluster_replicas()
        degraded = any(state != "HEALTHY" for state in deployments.values())
        resizing = {name: scaling(deployments.get(name, ""), r) for name, r in replicas.items()}
        return {
            "status": "degraded" if degraded else "ok",
            "version": __version__,
            "surfaces": {s.name: s.mount for s in surfaces},
            "deployments": deployments,
            "replicas": {name: r["replicas"] for name, r in replicas.items()},
            "messages": {name: r["message"] for name, r in replicas.items() if "message" in r},
            "scaling": {name: s for name, s in resizing.items() if s},
        }

    @app.get("/ready", tags=["platform"])
    async def ready() -> JSONResponse:
        """Readiness: database and blob store reachable, every deployment healthy."""
        checks: dict[str, str] = {}
        try:
            await asyncio.to_thread(ping_database, ctx.settings.database_url)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            await asyncio.to_thread(ctx.blobs.exists, "_ready/probe")
            checks["blobs"] = "ok"
        except Exception as exc:
            checks["blobs"] = f"error: {type(exc).__name__}"
        deployments = await ctx.cluster_status()
        for name, state in deployments.items():
            checks[f"deployment:{name}"] = "ok" if state == "HEALTHY" else state.lower()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get(
        "/blobs/{key:path}",
        tags=["platform"],
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    async def blob(
        key: str,
        expires: int = Query(...),
        sig: str = Query(..., max_length=128),
    ) -> Response:
        """Serve a local blob through a signed, expiring URL (S3 blobs use presigned URLs)."""
        store = ctx.blobs
        if not isinstance(store, LocalBlobStore):
            raise NotFound("blobs are served by the object store")
        store.signer.verify(key, expires, sig)
        try:
            data = await asyncio.to_thread(store.get, key)
        except NotFound:
            raise Forbidden("invalid or expired URL") from None
        return Response(data, media_type=store.content_type(key) or "application/octet-stream")

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def root() -> HTMLResponse:
        """Where a person lands: the console, and each surface's API docs."""
        return HTMLResponse(_root_page(surfaces))

    for surface in surfaces:
        app.mount(surface.mount, build_surface_app(surface, ctx), name=surface.name)
    # The web console: static files only; its pages call the surfaces' public APIs.
    app.mount("/ui", StaticFiles(directory=STATIC_DIR, html=True), name="console")

    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=ctx.settings.limits.max_request_bytes,
        renderer_for=renderer_for,
        emit_request_id=not behind_serve_proxy,
    )
    # Outermost: refused bodies and unhandled errors are counted too.
    app.add_middleware(
        RequestMetricsMiddleware,
        metrics=ctx.metrics,
        mounts=[(s.name, s.mount) for s in surfaces],
    )
    return app


def _root_page(surfaces: Iterable[Surface]) -> str:
    pages = "".join(f'<li><a href="/ui/{file}">{title}</a></li>' for file, title in PAGES)
    docs = "".join(
        f'<li><a href="{s.mount}/docs">{s.name}</a> <code>{s.mount}</code></li>'
        for s in sorted(surfaces, key=lambda s: s.name)
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>VisionServe {__version__}</title></head><body><main>"
        f"<h1>VisionServe {__version__}</h1>"
        f'<p><a href="/ui/">Open the web console</a> (/ui/)</p><ul>{pages}</ul>'
        f"<h2>API documentation</h2><ul>{docs}</ul>"
        '<p><a href="/health">/health</a> · <a href="/ready">/ready</a></p>'
        "</main></body></html>"
    )
