"""Each surface's ASGI app as the API tests build it: real pure models behind fake handles."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from tests.fakes import LocalHandle, instance
from visionserve.api.app import create_app
from visionserve.platform.context import AppContext, build_context
from visionserve.settings import Settings, get_settings
from visionserve.surfaces import load_surface


@dataclass
class Built:
    app: FastAPI
    mount: str
    headers: dict[str, str] = field(default_factory=dict)


@functools.cache
def _models(model_home: str) -> dict[str, Any]:
    """Loaded once per test session: the deployment classes, outside Serve."""
    from deployments.bg_removal import BackgroundRemoval
    from deployments.documents import Chunking, DocumentPages, Layout, Ocr
    from deployments.upscale import Upscale

    snapshot = Settings(model_home=model_home).model_dump(mode="json")
    return {
        "u2netp": instance(BackgroundRemoval, "u2netp", snapshot),
        "upscale": instance(Upscale, snapshot),
        "pages": instance(DocumentPages, snapshot),
        "ocr": instance(Ocr, snapshot),
        "layout": instance(Layout),
        "chunking": instance(Chunking, snapshot),
    }


def _app(ctx: AppContext, name: str, *, keyed: bool) -> Built:
    surface = load_surface(name)
    headers = {}
    if keyed:
        key, _ = ctx.keys.create(f"fuzz-{name}")
        headers["Authorization"] = f"Bearer {key}"
    return Built(create_app(ctx, [surface]), surface.mount, headers)


def cutout(settings: Settings) -> Built:
    from graphs.cutout import CutoutGraph
    from visionserve.surfaces.cutout.service import CATALOGUE, CutoutCatalogue

    settings.model_home = get_settings().model_home
    models = _models(str(settings.model_home))
    removers = {"local_u2netp": LocalHandle(models["u2netp"])}
    names = {"local_u2netp": "U2Netp"}
    upscaler = LocalHandle(models["upscale"])
    graph = instance(CutoutGraph, removers, names, upscaler, 30.0)
    catalogue = CutoutCatalogue(models=names, upscale_methods=sorted(models["upscale"].upscalers))
    ctx = build_context(
        settings,
        handles={"cutout-graph": LocalHandle(graph), "upscale": upscaler},
        runtime={CATALOGUE: catalogue},
    )
    return _app(ctx, "cutout", keyed=False)


def documents(settings: Settings) -> Built:
    from graphs.documents import DocumentsGraph

    settings.model_home = get_settings().model_home
    m = _models(str(settings.model_home))
    graph = instance(
        DocumentsGraph,
        LocalHandle(m["pages"]),
        LocalHandle(m["ocr"]),
        LocalHandle(m["layout"]),
        LocalHandle(m["chunking"]),
        settings.documents.page_timeout_s,
    )
    ctx = build_context(settings, handles={"documents-graph": LocalHandle(graph)})
    return _app(ctx, "documents", keyed=True)


def inspect(settings: Settings) -> Built:
    return _app(build_context(settings), "inspect", keyed=False)


def extract(settings: Settings) -> Built:
    # No worker runs here: an accepted ingest answers 202 at once instead of waiting.
    settings.extract.sync_window_s = 0
    return _app(build_context(settings), "extract", keyed=True)


def edit(settings: Settings) -> Built:
    return _app(build_context(settings), "edit", keyed=False)


SURFACE_APPS: dict[str, Callable[[Settings], Built]] = {
    "cutout": cutout,
    "documents": documents,
    "inspect": inspect,
    "extract": extract,
    "edit": edit,
}
