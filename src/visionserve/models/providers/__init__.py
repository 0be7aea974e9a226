"""Remote background-removal providers (Runware, Kie.ai), enabled by their API keys.

Pure and Ray-free: each provider is an async class behind
:class:`RemoteBackgroundRemover`; :func:`build_providers` turns settings into the
models whose keys are set, keyed by the cutout contract's model ids.
"""

from __future__ import annotations

import httpx

from visionserve.models.providers.base import Publisher, RemoteBackgroundRemover, RemoteResult
from visionserve.models.providers.kie import KieRecraftRemover
from visionserve.models.providers.runware import RunwareRemover
from visionserve.platform.egress import EgressPolicy
from visionserve.settings import Settings

__all__ = [
    "KieRecraftRemover",
    "Publisher",
    "RemoteBackgroundRemover",
    "RemoteResult",
    "RunwareRemover",
    "build_providers",
]


def build_providers(
    settings: Settings,
    *,
    publish: Publisher | None = None,
    http: httpx.AsyncClient | None = None,
    egress: EgressPolicy | None = None,
) -> dict[str, RemoteBackgroundRemover]:
    """The remote models whose provider has an API key set.

    Args:
        settings: Process settings; ``settings.providers`` holds keys, base URLs and
            model ids, ``settings.egress`` the policy for result URLs and
            ``settings.limits.max_download_bytes`` the largest result accepted.
        publish: How Kie.ai gets a URL for the input image (a signed blob URL);
            by default Kie.ai's own File Upload API.
        http: A client the providers share; by default one client per call.
        egress: The policy result URLs must pass; by default one from ``settings.egress``.

    Returns:
        ``{model_id: remover}`` for ``runware_rmbg2`` and ``runware_birefnet_portrait``
        when a Runware key is set, and ``kie_recraft`` when a Kie.ai key is set.
    """
    conf = settings.providers
    egress = egress or EgressPolicy(settings.egress)
    max_result_bytes = settings.limits.max_download_bytes
    removers: dict[str, RemoteBackgroundRemover] = {}
    if conf.runware_api_key:
        for model_id, model_name, air in (
            ("runware_rmbg2", "Runware RMBG 2.0", conf.runware_rmbg2_model),
            (
                "runware_birefnet_portrait",
                "Runware BiRefNet Portrait",
                conf.runware_birefnet_portrait_model,
            ),
        ):
            removers[model_id] = RunwareRemover(
                conf.runware_api_key,
                air,
                model_id,
                model_name,
                conf.runware_base_url,
                http,
                egress=egress,
                max_result_bytes=max_result_bytes,
            )
    if conf.kie_api_key:
        removers["kie_recraft"] = KieRecraftRemover(
            conf.kie_api_key,
            conf.kie_base_url,
            conf.kie_poll_interval_s,
            cost_usd=conf.kie_cost_usd,
            publish=publish,
            upload_base_url=conf.kie_upload_base_url,
            http=http,
            egress=egress,
            max_result_bytes=max_result_bytes,
        )
    return removers
