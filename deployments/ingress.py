"""The HTTP ingress: the FastAPI app factory served by Ray Serve."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from ray import serve
from ray.serve.config import BackpressureConfig

from deployments.common import (
    HEALTH,
    IO_CPUS,
    autoscaling,
    builder_runtime,
    ray_cluster_resources,
    serve_deployment_status,
    serve_replica_states,
)
from deployments.metrics import METRICS
from deployments.pipeline_actor import RayPipelineHost
from visionserve.api import Surface, create_app
from visionserve.platform.context import build_context
from visionserve.platform.logging import configure_logging
from visionserve.platform.worker import load_job_modules
from visionserve.settings import settings_from
from visionserve.store.db import ping as ping_database
from visionserve.surfaces import job_modules, load_surface
from visionserve.surfaces.inspect.pipeline_service import PIPELINE_HOST


def _import(path: str) -> Surface:
    module, _, attr = path.partition(":")
    surface = getattr(importlib.import_module(module), attr or "SURFACE")
    if not isinstance(surface, Surface):
        raise TypeError(f"{path} is not a visionserve Surface")
    return surface


@serve.deployment(
    name="ingress",
    # I/O-bound (HTTP, the database, awaiting handles): it reserves next to nothing, so the
    # model replicas and a training have the cores.
    ray_actor_options={"num_cpus": IO_CPUS},
    autoscaling_config=autoscaling(32),
    max_ongoing_requests=128,
    max_queued_requests=256,
    backpressure_config=BackpressureConfig(status_code=503, retry_after_s=1),
    **HEALTH,
    graceful_shutdown_timeout_s=20,
)
@serve.ingress()
class Ingress:
    """Owns the app context; handlers reach model deployments through ``handles``."""

    def __init__(self, args: dict[str, Any], handles: dict[str, Any]) -> None:
        configure_logging()
        self.settings = settings_from(args.get("settings"))
        self.surfaces = [load_surface(name) for name in args["surfaces"]]
        self.surfaces += [_import(path) for path in args.get("extra_surfaces", [])]
        # Job kinds must be known here too: cancelling a queued job emits its webhook.
        load_job_modules(job_modules(args["surfaces"]) + args.get("job_modules", []))
        runtime = builder_runtime(args)
        if "anomaly" in handles:
            snapshot = self.settings.model_dump(mode="json")
            runtime[PIPELINE_HOST] = RayPipelineHost(snapshot, handles["anomaly"])
        self.ctx = build_context(
            self.settings,
            handles=handles,
            cluster_status=serve_deployment_status,
            cluster_replicas=serve_replica_states,
            cluster_resources=ray_cluster_resources,
            runtime=runtime,
            metrics=METRICS,
        )

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.ctx, self.surfaces, behind_serve_proxy=True)

    async def check_health(self) -> None:
        # The database is the one dependency every route needs.
        await asyncio.to_thread(ping_database, self.settings.database_url)
