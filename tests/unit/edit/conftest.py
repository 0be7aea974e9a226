"""Edit engine fixtures: the model home (weights fetched by `visionserve models fetch`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionserve.models.edit import LocalModelOps
from visionserve.models.edit.engines import LocalEngines
from visionserve.settings import get_settings

EDIT_WEIGHTS = [
    "u2netp.onnx",
    "waifu2x-upconv7-scale2x.onnx",
    "centerface.onnx",
    "multistyle26.onnx",
    "arbitrary_predict.onnx",
    "arbitrary_transform.onnx",
]


@pytest.fixture(scope="session")
def edit_model_home() -> Path:
    home = get_settings().model_home
    assert home is not None
    missing = [w for w in EDIT_WEIGHTS if not (home / w).is_file()]
    if missing:
        pytest.fail(f"weights {missing} missing in {home}: run `visionserve models fetch`")
    return home


@pytest.fixture(scope="module")
def models(edit_model_home: Path) -> LocalModelOps:
    """The bg-removal and waifu2x classes the deployments use, one thread each."""
    return LocalModelOps(edit_model_home, threads=1)


@pytest.fixture(scope="module")
def engines(edit_model_home: Path) -> LocalEngines:
    return LocalEngines(edit_model_home, threads=1)
