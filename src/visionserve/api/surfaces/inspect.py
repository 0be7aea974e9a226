"""inspect: anomaly detection projects, training and pipelines (contract: geti-inspect-api.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from fastapi.responses import JSONResponse

from visionserve.api.context import AppContext
from visionserve.api.surface import Ctx, Surface
from visionserve.errors import VisionServeError
from visionserve.schemas import inspect as i
from visionserve.services.inspect import InspectService


def render_error(err: VisionServeError, request_id: str) -> JSONResponse:
    """``{"detail": "..."}``; validation errors keep FastAPI's list, as the contract's app does."""
    errors = err.details.get("errors") if err.status == 422 else None
    return JSONResponse({"detail": errors or err.message}, status_code=err.status)


def service(ctx: AppContext) -> InspectService:
    return InspectService(ctx.settings, ctx.blobs)


_IMAGE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {mime: {} for mime in ("image/png", "image/jpeg", "image/webp", "image/bmp")},
        "description": "The image exactly as uploaded",
    }
}
_THUMBNAIL: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "PNG thumbnail, at most 256 px a side"}
}


def projects_router(ctx: AppContext) -> APIRouter:
    r = APIRouter(tags=["projects"])

    @r.get("/projects", response_model=list[i.Project])
    async def list_projects(app: Ctx) -> list[i.Project]:
        return await asyncio.to_thread(service(app).list_projects)

    @r.post("/projects", response_model=i.Project, status_code=201)
    async def create_project(body: i.ProjectCreate, app: Ctx) -> i.Project:
        """Create a project; 409 if the name is taken."""
        return await asyncio.to_thread(service(app).create_project, body)

    @r.get("/projects/{project_id}", response_model=i.Project)
    async def get_project(project_id: str, app: Ctx) -> i.Project:
        return await asyncio.to_thread(service(app).get_project, project_id)

    @r.patch("/projects/{project_id}", response_model=i.Project)
    async def update_project(project_id: str, body: i.ProjectUpdate, app: Ctx) -> i.Project:
        return await asyncio.to_thread(service(app).update_project, project_id, body)

    @r.delete("/projects/{project_id}", status_code=204, response_class=Response)
    async def delete_project(project_id: str, app: Ctx) -> Response:
        """Delete the project with its media, snapshots, sources and sinks."""
        await asyncio.to_thread(service(app).delete_project, project_id)
        return Response(status_code=204)

    return r


def media_router(ctx: AppContext) -> APIRouter:
    r = APIRouter(tags=["media"])

    @r.get("/projects/{project_id}/media", response_model=i.MediaPage)
    async def list_media(
        project_id: str,
        app: Ctx,
        label: i.Label | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> i.MediaPage:
        return await asyncio.to_thread(
            service(app).list_media, project_id, label=label, limit=limit, offset=offset
        )

    @r.post("/projects/{project_id}/media", response_model=i.UploadResult, status_code=201)
    async def upload_media(
        project_id: str,
        app: Ctx,
        files: Annotated[list[UploadFile], File(description="Image files to upload")],
        label: Annotated[i.Label, Form(description="Label for all images")],
    ) -> i.UploadResult:
        """Upload images with one label; files that are not valid images are counted in
        ``failed`` and listed in ``errors`` without failing the others."""
        limit = app.settings.limits.max_download_bytes
        read: list[tuple[str, bytes]] = []
        for n, upload in enumerate(files):
            # One byte past the limit is enough for the service to refuse the file.
            read.append(((upload.filename or f"file-{n}")[:500], await upload.read(limit + 1)))
        return await service(app).upload(project_id, read, label)

    @r.get("/media/thumbnails/{media_id}.png", response_class=Response, responses=_THUMBNAIL)
    async def get_thumbnail(media_id: str, app: Ctx) -> Response:
        data = await asyncio.to_thread(service(app).media_thumbnail, media_id)
        return Response(data, media_type="image/png")

    @r.get("/media/{media_id}", response_class=Response, responses=_IMAGE)
    async def get_media(media_id: str, app: Ctx) -> Response:
        data, content_type = await asyncio.to_thread(service(app).media_image, media_id)
        return Response(data, media_type=content_type)

    @r.delete("/media/{media_id}", status_code=204, response_class=Response)
    async def delete_media(media_id: str, app: Ctx) -> Response:
        await asyncio.to_thread(service(app).delete_media, media_id)
        return Response(status_code=204)

    return r


def snapshots_router(ctx: AppContext) -> APIRouter:
    r = APIRouter(tags=["snapshots"])

    @r.get("/projects/{project_id}/snapshots", response_model=list[i.Snapshot])
    async def list_snapshots(project_id: str, app: Ctx) -> list[i.Snapshot]:
        return await asyncio.to_thread(service(app).list_snapshots, project_id)

    @r.post("/projects/{project_id}/snapshots", response_model=i.Snapshot, status_code=201)
    async def create_snapshot(project_id: str, body: i.SnapshotCreate, app: Ctx) -> i.Snapshot:
        """Freeze the project's current media as a named set; 409 if the name is taken."""
        return await asyncio.to_thread(service(app).create_snapshot, project_id, body)

    return r


def io_router(ctx: AppContext) -> APIRouter:
    r = APIRouter(tags=["sources and sinks"])

    @r.get("/projects/{project_id}/sources", response_model=list[i.Source])
    async def list_sources(project_id: str, app: Ctx) -> list[i.Source]:
        return await asyncio.to_thread(service(app).list_sources, project_id)

    @r.post("/projects/{project_id}/sources", response_model=i.Source, status_code=201)
    async def create_source(project_id: str, body: i.SourceCreate, app: Ctx) -> i.Source:
        return await asyncio.to_thread(service(app).create_source, project_id, body)

    @r.delete("/sources/{source_id}", status_code=204, response_class=Response)
    async def delete_source(source_id: str, app: Ctx) -> Response:
        await asyncio.to_thread(service(app).delete_source, source_id)
        return Response(status_code=204)

    @r.get("/projects/{project_id}/sinks", response_model=list[i.Sink])
    async def list_sinks(project_id: str, app: Ctx) -> list[i.Sink]:
        return await asyncio.to_thread(service(app).list_sinks, project_id)

    @r.post("/projects/{project_id}/sinks", response_model=i.Sink, status_code=201)
    async def create_sink(project_id: str, body: i.SinkCreate, app: Ctx) -> i.Sink:
        return await asyncio.to_thread(service(app).create_sink, project_id, body)

    @r.delete("/sinks/{sink_id}", status_code=204, response_class=Response)
    async def delete_sink(sink_id: str, app: Ctx) -> Response:
        await asyncio.to_thread(service(app).delete_sink, sink_id)
        return Response(status_code=204)

    return r


SURFACE = Surface(
    name="inspect",
    mount="/inspect/api",
    title="inspect",
    description="Anomaly detection: projects, media, training, models, export, live pipelines.",
    render_error=render_error,
    routers=(projects_router, media_router, snapshots_router, io_router),
    requires_key=False,
    validation_status=422,
)
