"""Session fixtures: anomaly models trained once on generated textures.

Registered as a plugin in tests/conftest.py.

- ``anomaly_model_home``: a model home with the built-in lite0 backbone (converted).
- ``texture_set``: 20 normal + 6 anomalous 128 px textures with masks.
- ``trained_patchcore`` / ``trained_padim``: ``TrainResult`` of a full train + export
  (image_size 128); ``trained_patchcore_run`` / ``trained_padim_run`` add the progress
  calls, the samples and the validation split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.textures import TextureSample, make_dataset

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: tests never download


@dataclass
class TrainedRun:
    result: Any  # visionserve.models.anomaly.training.TrainResult
    progress: list[tuple[float, dict[str, Any]]]
    samples: list[TextureSample]
    val: list[Any]  # the Sample list used for validation
    model_home: Path


@pytest.fixture(scope="session")
def anomaly_model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("anomaly-model-home")


@pytest.fixture(scope="session")
def texture_set(tmp_path_factory: pytest.TempPathFactory) -> list[TextureSample]:
    return make_dataset(tmp_path_factory.mktemp("textures"), normal=20, anomalous=6)


def _train(
    factory: pytest.TempPathFactory,
    architecture: str,
    samples: list[TextureSample],
    model_home: Path,
) -> TrainedRun:
    from visionserve.models.anomaly.training import Sample, split, train

    train_images, val = split([Sample(*s) for s in samples])
    calls: list[tuple[float, dict[str, Any]]] = []
    result = train(
        architecture,
        {"image_size": 128},
        train_images,
        val,
        factory.mktemp(f"train-{architecture}"),
        model_home,
        lambda fraction, info: calls.append((fraction, info)),
    )
    return TrainedRun(result, calls, samples, val, model_home)


@pytest.fixture(scope="session")
def trained_patchcore_run(
    tmp_path_factory: pytest.TempPathFactory,
    texture_set: list[TextureSample],
    anomaly_model_home: Path,
) -> TrainedRun:
    return _train(tmp_path_factory, "patchcore", texture_set, anomaly_model_home)


@pytest.fixture(scope="session")
def trained_padim_run(
    tmp_path_factory: pytest.TempPathFactory,
    texture_set: list[TextureSample],
    anomaly_model_home: Path,
) -> TrainedRun:
    return _train(tmp_path_factory, "padim", texture_set, anomaly_model_home)


@pytest.fixture(scope="session")
def trained_patchcore(trained_patchcore_run: TrainedRun) -> Any:
    return trained_patchcore_run.result


@pytest.fixture(scope="session")
def trained_padim(trained_padim_run: TrainedRun) -> Any:
    return trained_padim_run.result
