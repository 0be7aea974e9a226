"""The Serve application: composition only. ``serve_config.yaml`` imports ``build_app``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from ray.serve import Application

from deployments.ingress import Ingress
from deployments.job_worker import JobWorker
from visionserve.settings import settings_from

SurfaceName = Literal["cutout", "documents", "extract", "inspect", "edit"]
ALL_SURFACES: list[SurfaceName] = ["cutout", "documents", "extract", "inspect", "edit"]


class AppArgs(BaseModel):
    """Application arguments (``args:`` in serve_config.yaml)."""

    surfaces: list[SurfaceName] = Field(default_factory=lambda: list(ALL_SURFACES))
    # Settings overrides on top of VISIONSERVE_* env vars, e.g. {"database_url": "..."}.
    settings: dict[str, Any] = Field(default_factory=dict)
    # Extra modules whose @job_kind handlers the workers should run.
    job_modules: list[str] = Field(default_factory=list)
    # Extra surfaces as "module:ATTRIBUTE" import paths (plugins, test surfaces).
    extra_surfaces: list[str] = Field(default_factory=list)


def build_app(args: dict[str, Any]) -> Application:
    """Build the whole VisionServe application from its args.

    The settings are resolved here, once, and handed to every deployment: replicas
    then agree on paths and servers whatever their working directory, and on a
    ``ray start`` cluster (whose workers do not inherit this process's environment).
    """
    app_args = AppArgs.model_validate(args or {}).model_dump()
    app_args["settings"] = settings_from(app_args["settings"]).model_dump(mode="json")
    handles: dict[str, Any] = {}
    handles["job-worker"] = JobWorker.bind(app_args, {})
    return Ingress.bind(app_args, handles)


app = build_app({})
