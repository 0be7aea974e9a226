"""The HTTP ingress: the FastAPI app factory served by Ray Serve."""

from __future__ import annotations

import importlib
from typing import Any

from ray import serve
from ray.serve.config import BackpressureConfig

from deployments.common import HEALTH, autoscaling, configure_logging, serve_deployment_status
from visionserve.api.app import create_app
from visionserve.api.context import build_context
from visionserve.api.surface import Surface
from visionserve.api.surfaces import SURFACES
from visionserve.settings import settings_from
from visionserve.worker import load_job_modules


def _import(path: str) -> Surface:
    module, _, attr = path.partition(":")
    surface = getattr(importlib.import_module(module), attr or "SURFACE")
    if not isinstance(surface, Surface):
        raise TypeError(f"{path} is not a visionserve Surface")
    return surface


@serve.deployment(
    name="ingress",
    ray_actor_options={"num_cpus": 0.2},
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
        self.surfaces = [SURFACES[name] for name in args["surfaces"]]
        self.surfaces += [_import(path) for path in args.get("extra_surfaces", [])]
        # Job kinds must be known here too: cancelling a queued job emits its webhook.
        load_job_modules([m for s in self.surfaces for m in s.job_modules])
        load_job_modules(args.get("job_modules", []))
        self.ctx = build_context(
            self.settings, handles=handles, cluster_status=serve_deployment_status
        )

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.ctx, self.surfaces, behind_serve_proxy=True)

    async def check_health(self) -> None:
        # The database is the one dependency every route needs.
        import asyncio

        from visionserve.api.app import _ping_database

        await asyncio.to_thread(_ping_database, self.ctx.database_url)
