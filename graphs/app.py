"""The Serve application: composition only. ``serve_config.yaml`` imports ``build_app``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from ray.serve import Application

from deployments.anomaly import AnomalyDetection
from deployments.bg_removal import BackgroundRemoval
from deployments.documents import Chunking, DocumentPages, Layout, Ocr
from deployments.extraction import Extraction
from deployments.ingress import Ingress
from deployments.job_worker import JobWorker
from deployments.remote_bg import RemoteBackgroundRemoval
from deployments.upscale import Upscale
from graphs.cutout import CutoutGraph
from graphs.documents import DocumentsGraph
from graphs.edit import edit_graph
from graphs.extract import ExtractGraph
from visionserve.models.bg_removal import local_model
from visionserve.models.upscale import available_upscalers
from visionserve.settings import Settings, settings_from
from visionserve.surfaces.cutout.service import CutoutCatalogue

SurfaceName = Literal["cutout", "documents", "extract", "inspect", "edit"]
ALL_SURFACES: list[SurfaceName] = ["cutout", "documents", "extract", "inspect", "edit"]


class CutoutArgs(BaseModel):
    # rembg model names; each becomes a deployment bg-<name>. Its file must be in the
    # model home (u2netp and u2net are fetched by `make setup`).
    models: list[str] = Field(default_factory=lambda: ["u2netp", "u2net"])
    timeout_s: float = Field(60.0, gt=0, description="Default per-model timeout")


class AppArgs(BaseModel):
    """Application arguments (``args:`` in serve_config.yaml)."""

    surfaces: list[SurfaceName] = Field(default_factory=lambda: list(ALL_SURFACES))
    cutout: CutoutArgs = Field(default_factory=CutoutArgs)
    # Settings overrides on top of VISIONSERVE_* env vars, e.g. {"database_url": "..."}.
    settings: dict[str, Any] = Field(default_factory=dict)
    # Extra modules whose @job_kind handlers the workers should run.
    job_modules: list[str] = Field(default_factory=list)
    # Extra surfaces as "module:ATTRIBUTE" import paths (plugins, test surfaces).
    extra_surfaces: list[str] = Field(default_factory=list)


class ImageModels(BaseModel):
    """The bg-removal and upscale deployments, bound once for every surface that uses them."""

    model_config = {"arbitrary_types_allowed": True}

    removers: dict[str, Any]  # model_id -> bound deployment (local or remote provider)
    names: dict[str, str]  # model_id -> display name
    upscaler: Any
    methods: list[str]  # the upscale methods the upscaler serves


def image_models(args: CutoutArgs, settings: Settings, snapshot: dict[str, Any]) -> ImageModels:
    """bg-<model> per local model, remote-<id> per provider with a key, and the upscaler."""
    from visionserve.models.providers import build_providers

    removers: dict[str, Any] = {}
    names: dict[str, str] = {}
    for name in args.models:
        model = local_model(name)
        removers[model.model_id] = BackgroundRemoval.options(name=f"bg-{model.name}").bind(
            model.name, snapshot
        )
        names[model.model_id] = model.title
    for model_id, provider in build_providers(settings).items():
        removers[model_id] = RemoteBackgroundRemoval.options(name=f"remote-{model_id}").bind(
            model_id, snapshot, args.timeout_s
        )
        names[model_id] = provider.model_name
    methods = available_upscalers(settings.model_dir)
    return ImageModels(
        removers=removers, names=names, upscaler=Upscale.bind(snapshot, methods), methods=methods
    )


def cutout_graph(args: CutoutArgs, models: ImageModels) -> tuple[dict[str, Any], CutoutCatalogue]:
    """The cutout graph over the shared image models.

    Returns:
        The handles, and the catalogue (models, upscale methods) the ingress and the
        job worker answer from without asking the deployments.
    """
    graph = CutoutGraph.bind(models.removers, models.names, models.upscaler, args.timeout_s)
    catalogue = CutoutCatalogue(models=models.names, upscale_methods=models.methods)
    return {"cutout-graph": graph, "upscale": models.upscaler}, catalogue


def document_models(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The ocr and layout deployments, bound once for every graph that reads documents."""
    return {"ocr": Ocr.bind(snapshot), "layout": Layout.bind()}


def documents_graph(snapshot: dict[str, Any], models: dict[str, Any]) -> dict[str, Any]:
    """doc-pages, ocr, layout and chunking deployments behind the documents graph."""
    graph = DocumentsGraph.bind(
        DocumentPages.bind(snapshot),
        models["ocr"],
        models["layout"],
        Chunking.bind(snapshot),
        snapshot["documents"]["page_timeout_s"],
    )
    return {"documents-graph": graph}


def extract_graph(snapshot: dict[str, Any], models: dict[str, Any]) -> dict[str, Any]:
    """The extraction engine behind the extract graph, reading scans with the shared OCR."""
    return {"extract-graph": ExtractGraph.bind(Extraction.bind(snapshot), models["ocr"])}


def build_app(args: dict[str, Any]) -> Application:
    """Build the whole VisionServe application from its args.

    The settings are resolved here, once, and handed to every deployment: replicas
    then agree on paths and servers whatever their working directory, and on a
    ``ray start`` cluster (whose workers do not inherit this process's environment).
    """
    app_args = AppArgs.model_validate(args or {})
    settings = settings_from(app_args.settings)
    snapshot = settings.model_dump(mode="json")
    handles: dict[str, Any] = {}
    # What the builder resolved that requests would otherwise ask replicas for.
    catalogues: dict[str, Any] = {}
    if {"cutout", "edit"} & set(app_args.surfaces):
        images = image_models(app_args.cutout, settings, snapshot)
        if "cutout" in app_args.surfaces:
            cutout, catalogues["cutout"] = cutout_graph(app_args.cutout, images)
            handles.update(cutout)
        if "edit" in app_args.surfaces:
            handles.update(edit_graph(settings, snapshot, images.removers, images.upscaler))
    if {"documents", "extract"} & set(app_args.surfaces):
        models = document_models(snapshot)
        if "documents" in app_args.surfaces:
            handles.update(documents_graph(snapshot, models))
        if "extract" in app_args.surfaces:
            handles.update(extract_graph(snapshot, models))
    if "inspect" in app_args.surfaces:
        handles["anomaly"] = AnomalyDetection.bind(snapshot)
    plain = app_args.model_dump()
    plain["settings"] = snapshot
    plain["catalogues"] = {name: c.model_dump(mode="json") for name, c in catalogues.items()}
    handles["job-worker"] = JobWorker.bind(plain, dict(handles))
    return Ingress.bind(plain, handles)


app = build_app({})
