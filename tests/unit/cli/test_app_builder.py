"""The app builder hands what it already knows to the ingress and the job worker."""

from __future__ import annotations

from typing import Any

from deployments.common import builder_runtime
from graphs.app import build_app
from visionserve.models.upscale import available_upscalers
from visionserve.settings import get_settings
from visionserve.surfaces.cutout.service import CATALOGUE, CutoutCatalogue


def init_args(app: Any) -> tuple[Any, ...]:
    """What a bound deployment will be constructed with (binding starts no Ray)."""
    return tuple(app._bound_deployment.init_args)


def test_the_cutout_catalogue_travels_with_the_app_args() -> None:
    args, handles = init_args(build_app({"surfaces": ["cutout"]}))
    worker_args = init_args(handles["job-worker"])[0]
    for bound in (args, worker_args):
        catalogue = builder_runtime(bound)[CATALOGUE]
        assert isinstance(catalogue, CutoutCatalogue)
        assert catalogue.models == {"local_u2netp": "Local U2-Net-P", "local_u2net": "Local U2-Net"}
        assert catalogue.upscale_methods == available_upscalers(get_settings().model_home)
    # The upscale deployment serves exactly the methods announced.
    assert init_args(handles["upscale"])[1] == catalogue.upscale_methods
    assert builder_runtime(init_args(build_app({"surfaces": ["documents"]}))[0]) == {}
