"""inspect: anomaly detection projects, training and pipelines (contract: geti-inspect-api.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from fastapi.responses import JSONResponse

from visionserve.api.surface import Ctx
from visionserve.errors import ServiceUnavailable, Unprocessable, VisionServeError, remote_message
from visionserve.platform.context import AppContext
from visionserve.surfaces.inspect import schemas as i
from visionserve.surfaces.inspect.model_service import ModelService
from visionserve.surfaces.inspect.pipeline_service import (
    PIPELINE_HOST,
    NoPipelineHost,
    PipelineHost,
    PipelineService,
)
from visionserve.surfaces.inspect.service import InspectService


def render_error(err: VisionServeError, request_id: str) -> JSONResponse:
    """``{"detail": "..."}``; validation errors keep FastAPI's list, as the contract's app does."""
    errors = err.details.get("errors") if err.status == 422 else None
    return JSONResponse({"detail": errors or err.message}, status_code=err.status)


def service(ctx: AppContext) -> InspectService:
    return InspectService(ctx.settings, ctx.blobs)


def models(ctx: AppContext) -> ModelService:
    return ModelService(ctx.settings, ctx.blobs, ctx.queue)


def pipelines(ctx: AppContext) -> PipelineService:
    return PipelineService(ctx.settings, ctx.blobs)


def anomaly_handle(ctx: AppContext) -> Any:
    handle = ctx.handles.get("anomaly")
    if handle is None:
        raise ServiceUnavailable("The anomaly inference deployment is not part of this cluster")
    return handle


def host(ctx: AppContext) -> PipelineHost:
    """Where active pipelines run: Ray actors, injected by the ingress deployment."""
    found: PipelineHost | None = ctx.runtime.get(PIPELINE_HOST)
    return found or NoPipelineHost()


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

    @r.put("/media/{media_id}/mask", response_model=i.Media)
    async def put_mask(
        media_id: str,
        app: Ctx,
        file: Annotated[UploadFile, File(description="Defect mask, white = defect")],
    ) -> i.Media:
        """Attach a ground-truth defect mask to an image (an addition to the contract);
        with masks on every anomalous image, training reports pixel AUROC."""
        data = await file.read(app.settings.limits.max_download_bytes + 1)
        return await asyncio.to_thread(service(app).set_mask, media_id, data)

    @r.get("/media/{media_id}/mask", response_class=Response, responses=_THUMBNAIL)
    async def get_mask(media_id: str, app: Ctx) -> Response:
        data = await asyncio.to_thread(service(app).media_mask, media_id)
        return Response(data, media_type="image/png")

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
        """Create a source. A ``video_file`` path must lie in a video root (relative paths
        resolve against ``<home>/inspect/videos``); an ``ip_camera`` must not be on a
        loopback, link-local or metadata address. Otherwise 422, naming what is allowed."""
        return await asyncio.to_thread(service(app).create_source, project_id, body)

    @r.patch("/sources/{source_id}", response_model=i.Source)
    async def update_source(source_id: str, body: i.SourceUpdate, app: Ctx) -> i.Source:
        """Rename or reconfigure a source (an addition to the contract), checked as on
        creation; 409 while a running pipeline reads it."""
        await asyncio.to_thread(pipelines(app).guard_part_delete, "source_id", source_id, "source")
        return await asyncio.to_thread(service(app).update_source, source_id, body)

    @r.delete("/sources/{source_id}", status_code=204, response_class=Response)
    async def delete_source(source_id: str, app: Ctx) -> Response:
        """Delete a source; 409 while a running pipeline reads it."""
        await asyncio.to_thread(pipelines(app).guard_part_delete, "source_id", source_id, "source")
        await asyncio.to_thread(service(app).delete_source, source_id)
        return Response(status_code=204)

    @r.get("/projects/{project_id}/sinks", response_model=list[i.Sink])
    async def list_sinks(project_id: str, app: Ctx) -> list[i.Sink]:
        return await asyncio.to_thread(service(app).list_sinks, project_id)

    @r.post("/projects/{project_id}/sinks", response_model=i.Sink, status_code=201)
    async def create_sink(project_id: str, body: i.SinkCreate, app: Ctx) -> i.Sink:
        """Create a sink. A ``filesystem`` folder must lie in an output root (relative paths
        resolve against ``<home>/inspect/output``); an MQTT broker must not be on a
        loopback, link-local or metadata address, a webhook on no non-public one.
        Otherwise 422, naming what is allowed. Listings mask secrets as ``********``."""
        return await asyncio.to_thread(service(app).create_sink, project_id, body)

    @r.patch("/sinks/{sink_id}", response_model=i.Sink)
    async def update_sink(sink_id: str, body: i.SinkUpdate, app: Ctx) -> i.Sink:
        """Rename or reconfigure a sink (an addition to the contract), checked as on
        creation; a secret sent back as ``********`` is kept. 409 while a running
        pipeline writes to it."""
        await asyncio.to_thread(pipelines(app).guard_part_delete, "sink_id", sink_id, "sink")
        return await asyncio.to_thread(service(app).update_sink, sink_id, body)

    @r.delete("/sinks/{sink_id}", status_code=204, response_class=Response)
    async def delete_sink(sink_id: str, app: Ctx) -> Response:
        """Delete a sink; 409 while a running pipeline writes to it."""
        await asyncio.to_thread(pipelines(app).guard_part_delete, "sink_id", sink_id, "sink")
        await asyncio.to_thread(service(app).delete_sink, sink_id)
        return Response(status_code=204)

    return r


def training_router(ctx: AppContext) -> APIRouter:
    r = APIRouter(tags=["training and models"])

    @r.get("/trainable-models", response_model=list[i.TrainableModel])
    async def trainable_models(app: Ctx) -> list[dict[str, Any]]:
        """Architectures with their parameters; unavailable ones say which file is missing."""
        from visionserve.models.anomaly.catalog import trainable_models

        return await asyncio.to_thread(trainable_models, app.settings.model_dir)

    @r.post("/projects/{project_id}/train", response_model=i.TrainAccepted, status_code=202)
    async def train(project_id: str, body: i.TrainRequest, app: Ctx) -> i.TrainAccepted:
        """Start training; follow it on ``GET /jobs/{job_id}``. 422 for an unknown
        architecture or parameter (the valid ones are listed) or too few normal images."""
        return await asyncio.to_thread(models(app).start_training, project_id, body)

    @r.get("/projects/{project_id}/models", response_model=list[i.Model])
    async def list_models(project_id: str, app: Ctx) -> list[i.Model]:
        return await asyncio.to_thread(models(app).list_models, project_id)

    @r.get("/models/{model_id}", response_model=i.Model)
    async def get_model(model_id: str, app: Ctx) -> i.Model:
        return await asyncio.to_thread(models(app).get_model, model_id)

    @r.delete("/models/{model_id}", status_code=204, response_class=Response)
    async def delete_model(model_id: str, app: Ctx) -> Response:
        """Delete a model and its exports; 409 while a running pipeline uses it."""
        await asyncio.to_thread(models(app).delete_model, model_id)
        return Response(status_code=204)

    @r.get(
        "/models/{model_id}/export",
        response_class=Response,
        responses={200: {"content": {"application/zip": {}}, "description": "Model archive"}},
    )
    async def export_model(
        model_id: str, app: Ctx, format: i.ExportFormat = "openvino"
    ) -> Response:
        """A zip that loads in anomalib's OpenVINOInferencer / TorchInferencer or onnxruntime."""
        name, data = await asyncio.to_thread(models(app).export, model_id, format)
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        return Response(data, media_type="application/zip", headers=headers)

    @r.post("/models/{model_id}/predict", response_model=i.Prediction)
    async def predict(
        model_id: str, app: Ctx, file: Annotated[UploadFile, File(description="Image to score")]
    ) -> i.Prediction:
        """Score one image (an addition to the contract): score, label and heat map PNG."""
        data = await file.read(app.settings.limits.max_download_bytes + 1)
        return await models(app).predict(lambda: anomaly_handle(app), model_id, data)

    @r.get("/projects/{project_id}/jobs", response_model=list[i.Job])
    async def list_jobs(
        project_id: str,
        app: Ctx,
        type: i.JobType | None = None,
        status: i.JobStatus | None = None,
    ) -> list[i.Job]:
        return await asyncio.to_thread(models(app).list_jobs, project_id, type=type, status=status)

    @r.get("/jobs/{job_id}", response_model=i.Job)
    async def get_job(job_id: str, app: Ctx) -> i.Job:
        """Status, progress (0..1) and live metrics (epoch, loss where the model has one)."""
        return await asyncio.to_thread(models(app).get_job, job_id)

    @r.delete("/jobs/{job_id}", status_code=204, response_class=Response)
    async def cancel_job(job_id: str, app: Ctx) -> Response:
        """Cancel: a queued job never starts; a running training is stopped."""
        await asyncio.to_thread(models(app).cancel_job, app.queue, job_id)
        return Response(status_code=204)

    return r


def pipelines_router(ctx: AppContext) -> APIRouter:
    r = APIRouter(tags=["pipelines"])

    @r.get("/projects/{project_id}/pipelines", response_model=list[i.Pipeline])
    async def list_pipelines(project_id: str, app: Ctx) -> list[i.Pipeline]:
        return await asyncio.to_thread(pipelines(app).list_pipelines, project_id)

    @r.post("/projects/{project_id}/pipelines", response_model=i.Pipeline, status_code=201)
    async def create_pipeline(project_id: str, body: i.PipelineCreate, app: Ctx) -> i.Pipeline:
        return await asyncio.to_thread(pipelines(app).create_pipeline, project_id, body)

    @r.get("/pipelines/{pipeline_id}", response_model=i.Pipeline)
    async def get_pipeline(pipeline_id: str, app: Ctx) -> i.Pipeline:
        return await asyncio.to_thread(pipelines(app).get_pipeline, pipeline_id)

    @r.patch("/pipelines/{pipeline_id}", response_model=i.Pipeline)
    async def update_pipeline(pipeline_id: str, body: i.PipelineUpdate, app: Ctx) -> i.Pipeline:
        """Change a stopped pipeline; 409 while it runs."""
        return await asyncio.to_thread(pipelines(app).update_pipeline, pipeline_id, body)

    @r.delete("/pipelines/{pipeline_id}", status_code=204, response_class=Response)
    async def delete_pipeline(pipeline_id: str, app: Ctx) -> Response:
        await asyncio.to_thread(pipelines(app).delete_pipeline, pipeline_id)
        return Response(status_code=204)

    @r.get("/active-pipelines", response_model=list[i.ActivePipeline])
    async def list_active(app: Ctx) -> list[i.ActivePipeline]:
        """Running pipelines with live metrics."""
        return await pipelines(app).list_active(host(app))

    @r.post("/active-pipelines", response_model=i.ActivePipeline, status_code=201)
    async def start_pipeline(body: i.ActivePipelineStart, app: Ctx) -> i.ActivePipeline:
        """Start a pipeline's loop; a source that cannot be opened shows as status
        ``error`` with its message on ``GET /active-pipelines/{id}``. 422 when its source
        or sink no longer passes the folder and address checks (symlinks and DNS change)."""
        return await pipelines(app).start(host(app), body)

    @r.get("/active-pipelines/{active_id}", response_model=i.ActivePipeline)
    async def get_active(active_id: str, app: Ctx) -> i.ActivePipeline:
        return await pipelines(app).get_active(host(app), active_id)

    @r.delete("/active-pipelines/{active_id}", status_code=204, response_class=Response)
    async def stop_pipeline(active_id: str, app: Ctx) -> Response:
        await pipelines(app).stop(host(app), active_id)
        return Response(status_code=204)

    @r.post("/active-pipelines/{active_id}/capture", response_model=i.Capture, status_code=201)
    async def capture(active_id: str, app: Ctx) -> i.Capture:
        """Store the current frame with its anomaly score."""
        return await pipelines(app).capture(host(app), active_id)

    @r.get("/captures/{capture_id}.png", response_class=Response, responses=_THUMBNAIL)
    async def capture_image(capture_id: str, app: Ctx) -> Response:
        data = await asyncio.to_thread(pipelines(app).capture_image, capture_id)
        return Response(data, media_type="image/png")

    @r.post("/webrtc/offer", response_model=i.WebRtcAnswer)
    async def webrtc_offer(body: i.WebRtcOffer, app: Ctx) -> i.WebRtcAnswer:
        """Stream an active pipeline's annotated frames: send an SDP offer with a
        receive-only video transceiver, get the answer."""
        service, runs = pipelines(app), host(app)
        await service.live(runs, body.pipeline_id)
        try:
            sdp = await runs.offer(body.pipeline_id, body.sdp)
        except VisionServeError:
            raise
        except Exception as exc:
            raise Unprocessable(f"Bad SDP offer: {remote_message(exc)}") from exc
        return i.WebRtcAnswer(sdp=sdp)

    @r.post("/webrtc/candidate")
    async def webrtc_candidate(body: i.WebRtcCandidate, app: Ctx) -> dict[str, str]:
        """Add a trickled ICE candidate to the pipeline's peer connection."""
        service, runs = pipelines(app), host(app)
        await service.live(runs, body.pipeline_id)
        try:
            await runs.candidate(body.pipeline_id, body.candidate, body.sdpMid, body.sdpMLineIndex)
        except VisionServeError:
            raise
        except Exception as exc:
            raise Unprocessable(f"Bad ICE candidate: {remote_message(exc)}") from exc
        return {"status": "ok"}

    return r


def devices_router(ctx: AppContext) -> APIRouter:
    r = APIRouter(tags=["devices"])

    @r.get("/devices", response_model=i.Devices)
    async def devices(app: Ctx) -> i.Devices:
        """Cameras on this node and compute devices OpenVINO, ONNX Runtime and Ray see."""
        from visionserve.surfaces.inspect.devices import list_devices

        gpus = int((await app.cluster_resources()).get("GPU", 0))
        return await asyncio.to_thread(list_devices, gpus)

    return r
