"""edit composition: the edit deployment over the shared bg-removal and upscale models.

Composition only. The bg-removal deployment named by ``edit.bg_model`` and the
upscaler are the very ones cutout uses (bound once in graphs/app.py); the edit
deployment awaits them for every mask and upscale a plan needs.
"""

from __future__ import annotations

from typing import Any

from deployments.bg_removal import BackgroundRemoval
from deployments.edit import Edit
from visionserve.models.bg_removal import local_model
from visionserve.settings import Settings
from visionserve.surfaces.edit.editing import upscale_method
from visionserve.surfaces.edit.jobs import EDIT_HANDLE


def edit_graph(
    settings: Settings, snapshot: dict[str, Any], removers: dict[str, Any], upscaler: Any
) -> dict[str, Any]:
    """The ``edit`` handle; binds ``bg-<edit.bg_model>`` only if cutout did not."""
    model = local_model(settings.edit.bg_model)
    remover = removers.get(model.model_id) or BackgroundRemoval.options(
        name=f"bg-{model.name}"
    ).bind(model.name, snapshot)
    edit = Edit.bind(snapshot, remover, upscaler, upscale_method(settings))
    return {EDIT_HANDLE: edit}
