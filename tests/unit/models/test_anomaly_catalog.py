"""The anomaly catalog: listing, parameter validation, file requirements (no torch)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from visionserve.errors import Unprocessable
from visionserve.models.anomaly import backbones, catalog
from visionserve.models.anomaly.catalog import trainable_models, validate

ARCHS = ["patchcore", "padim", "efficientad", "stfpm", "dfm", "fastflow"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "models"


def place(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"placeholder")
    return path


def test_listing_has_every_architecture_with_specs(home: Path) -> None:
    listing = trainable_models(home)
    assert [m["name"] for m in listing] == ARCHS
    for model in listing:
        assert {"display_name", "description", "requirements", "available"} <= set(model)
        assert "unavailable_reason" in model
        assert model["parameters"]["image_size"]["default"] == 256
        for spec in model["parameters"].values():
            assert spec["type"] in {"string", "integer", "number", "boolean", "array"}
            assert "default" in spec and spec["description"]
            if "options" in spec:
                assert spec["default"] in spec["options"]
    by_name = {m["name"]: m for m in listing}
    assert by_name["patchcore"]["available"] is True
    assert by_name["patchcore"]["parameters"]["backbone"]["options"] == [backbones.LITE0]
    assert by_name["patchcore"]["parameters"]["layers"]["default"] == ["blocks.2", "blocks.4"]
    assert by_name["padim"]["parameters"]["n_features"]["default"] == 100
    assert by_name["efficientad"]["parameters"]["model_size"]["options"] == ["small", "medium"]
    assert by_name["stfpm"]["parameters"]["max_epochs"]["default"] == 10


@pytest.mark.parametrize("name", ["patchcore", "padim", "stfpm", "dfm"])
def test_defaults_validate_to_the_listed_defaults(home: Path, name: str) -> None:
    listed = next(m for m in trainable_models(home) if m["name"] == name)["parameters"]
    assert validate(name, {}, home) == {k: spec["default"] for k, spec in listed.items()}


def test_unknown_architecture_lists_valid_ones(home: Path) -> None:
    with pytest.raises(Unprocessable) as err:
        validate("patchcorez", {}, home)
    assert err.value.status == 422
    assert err.value.details["valid"] == ARCHS
    assert all(name in err.value.message for name in ARCHS)


def test_unknown_parameter_lists_valid_ones(home: Path) -> None:
    with pytest.raises(Unprocessable) as err:
        validate("patchcore", {"image_size": 128, "epochs": 3}, home)
    assert "'epochs'" in err.value.message
    assert "coreset_sampling_ratio" in err.value.message
    assert "coreset_sampling_ratio" in err.value.details["valid"]
    assert err.value.details["received"] == ["epochs"]


@pytest.mark.parametrize(
    ("name", "params", "fragment"),
    [
        ("patchcore", {"image_size": "256"}, "must be an integer"),
        ("patchcore", {"image_size": True}, "must be an integer"),
        ("patchcore", {"pre_trained": "yes"}, "must be a boolean"),
        ("patchcore", {"layers": "blocks.2"}, "array of strings"),
        ("patchcore", {"layers": []}, "array of strings"),
        ("patchcore", {"image_size": 32}, ">= 64"),
        ("patchcore", {"image_size": 2048}, "<= 1024"),
        ("patchcore", {"image_size": 200}, "multiple of 32"),
        ("patchcore", {"coreset_sampling_ratio": 0}, ">= 0.001"),
        ("patchcore", {"num_neighbors": 0}, ">= 1"),
        ("patchcore", {"layers": ["layer2", "layer3"]}, "blocks.0, blocks.1"),
        ("patchcore", {"backbone": "convnext_nano"}, "is not one of"),
        ("padim", {"n_features": 500}, "exceeds the 176 channels"),
        ("dfm", {"layer": "blocks.9"}, "not in tf_efficientnet_lite0"),
        ("stfpm", {"max_epochs": 0}, ">= 1"),
        ("efficientad", {"image_size": 128}, ">= 256"),
        ("efficientad", {"model_size": "large"}, "small, medium"),
        ("fastflow", {"backbone": "tf_efficientnet_lite0"}, "resnet18, wide_resnet50_2"),
    ],
)
def test_bad_values_are_rejected_clearly(
    home: Path, name: str, params: dict[str, object], fragment: str
) -> None:
    with pytest.raises(Unprocessable) as err:
        validate(name, params, home)
    assert fragment in err.value.message
    assert err.value.message.startswith(name)


def test_numbers_accept_ints_and_layers_follow_the_backbone(home: Path) -> None:
    assert (
        validate("patchcore", {"coreset_sampling_ratio": 1}, home)["coreset_sampling_ratio"] == 1.0
    )
    out = validate("padim", {"backbone": "resnet18", "pre_trained": False}, home)
    assert out["layers"] == ["layer1", "layer2", "layer3"]
    out = validate("patchcore", {"backbone": "wide_resnet50_2", "pre_trained": False}, home)
    assert out["layers"] == ["layer2", "layer3"]
    assert (
        validate("dfm", {"backbone": "resnet18", "pre_trained": False}, home)["layer"] == "layer3"
    )


def test_missing_backbone_names_the_file(home: Path) -> None:
    with pytest.raises(Unprocessable) as err:
        validate("patchcore", {"backbone": "wide_resnet50_2"}, home)
    expected = str(home / "timm" / "wide_resnet50_2.pth")
    assert expected in err.value.message
    assert err.value.details["missing_file"] == expected


def test_stfpm_needs_teacher_weights_even_without_pre_trained(home: Path) -> None:
    with pytest.raises(Unprocessable, match=re.escape("resnet18.pth")):
        validate("stfpm", {"backbone": "resnet18"}, home)


def test_efficientad_without_teacher_names_the_file(home: Path) -> None:
    listing = {m["name"]: m for m in trainable_models(home)}
    teacher = home / "anomalib" / "efficientad" / "pretrained_teacher_small.pth"
    assert listing["efficientad"]["available"] is False
    assert str(teacher) in listing["efficientad"]["unavailable_reason"]
    with pytest.raises(Unprocessable) as err:
        validate("efficientad", {}, home)
    assert str(teacher) in err.value.message
    assert err.value.details["missing_file"] == str(teacher)

    place(teacher)
    assert validate("efficientad", {}, home)["model_size"] == "small"
    with pytest.raises(Unprocessable, match=re.escape("pretrained_teacher_medium.pth")):
        validate("efficientad", {"model_size": "medium"}, home)
    assert {m["name"]: m for m in trainable_models(home)}["efficientad"]["available"]


def test_fastflow_needs_resnet_weights_or_random_features(home: Path) -> None:
    listing = {m["name"]: m for m in trainable_models(home)}
    assert listing["fastflow"]["available"] is False
    assert str(home / "timm" / "resnet18.pth") in listing["fastflow"]["unavailable_reason"]
    assert listing["fastflow"]["parameters"]["backbone"]["options"] == list(
        catalog.FASTFLOW_BACKBONES
    )
    with pytest.raises(Unprocessable, match=re.escape(str(home / "timm" / "resnet18.pth"))):
        validate("fastflow", {}, home)
    assert validate("fastflow", {"pre_trained": False}, home)["backbone"] == "resnet18"
    with pytest.raises(Unprocessable, match="image_size 448"):
        validate("fastflow", {"backbone": "cait_m48_448", "pre_trained": False}, home)

    place(home / "timm" / "wide_resnet50_2.safetensors")
    listing = {m["name"]: m for m in trainable_models(home)}
    assert listing["fastflow"]["available"] is True
    assert validate("fastflow", {"backbone": "wide_resnet50_2"}, home)["pre_trained"] is True
    # A placed file also widens the other models' backbone options.
    assert "wide_resnet50_2" in listing["patchcore"]["parameters"]["backbone"]["options"]


def test_penalty_source_prefers_a_placed_imagenette(home: Path) -> None:
    assert catalog.penalty_source(home) is None
    (home / "anomalib" / "imagenette").mkdir(parents=True)
    assert catalog.penalty_source(home) is None  # empty: fall back
    place(home / "anomalib" / "imagenette" / "train" / "n01" / "a.JPEG")
    assert catalog.penalty_source(home) == home / "anomalib" / "imagenette"


def test_catalog_and_inference_import_without_torch() -> None:
    code = (
        "import sys\n"
        "import visionserve.models.anomaly.catalog, visionserve.models.anomaly.inference\n"
        "from visionserve.models.anomaly.inference import AnomalyModel\n"
        "heavy = {'torch', 'anomalib', 'timm', 'lightning'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
