"""Anomaly detection for the inspect surface: anomalib training, catalog, OpenVINO inference.

Modules, by cost: :mod:`.catalog` (architectures, parameter validation) and
:mod:`.inference` (OpenVINO, numpy, cv2) import no torch; :mod:`.backbones` and
:mod:`.training` bring torch, timm, Lightning and anomalib. Names re-exported here
load their module on first use, so importing the package stays cheap.

Importing the package arms :func:`.compat.install` to run before torchvision's first
import (the CPU torch build cannot load torchvision's ops; see compat's docstring).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from visionserve.models.anomaly import compat

compat.install_hook()

_EXPORTS = {
    "AnomalyModel": "inference",
    "Prediction": "inference",
    "heatmap_png": "inference",
    "overlay": "inference",
    "ARCHITECTURES": "catalog",
    "trainable_models": "catalog",
    "validate": "catalog",
    "available_backbones": "backbones",
    "prepare_backbones": "backbones",
    "Sample": "training",
    "TrainResult": "training",
    "split": "training",
    "train": "training",
}
__all__ = [
    "ARCHITECTURES",
    "AnomalyModel",
    "Prediction",
    "Sample",
    "TrainResult",
    "available_backbones",
    "heatmap_png",
    "overlay",
    "prepare_backbones",
    "split",
    "train",
    "trainable_models",
    "validate",
]

if TYPE_CHECKING:
    from visionserve.models.anomaly.backbones import available_backbones, prepare_backbones
    from visionserve.models.anomaly.catalog import ARCHITECTURES, trainable_models, validate
    from visionserve.models.anomaly.inference import (
        AnomalyModel,
        Prediction,
        heatmap_png,
        overlay,
    )
    from visionserve.models.anomaly.training import Sample, TrainResult, split, train


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
