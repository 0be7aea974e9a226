"""Local background removal: real rembg sessions on generated scenes; registry errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.scenes import iou, object_scene
from visionserve.errors import UnknownModel
from visionserve.models.bg_removal import LOCAL_MODELS, BackgroundRemover, available, local_model
from visionserve.models.weights import PACKAGED, WeightError
from visionserve.settings import get_settings

PACKAGED_MODELS = ["u2netp", "u2net"]


@pytest.fixture(scope="module")
def model_home():  # type: ignore[no-untyped-def]
    home = get_settings().model_home
    missing = [m for m in PACKAGED_MODELS if not (home / LOCAL_MODELS[m].file).is_file()]
    if missing:
        pytest.fail(f"weights {missing} missing in {home}: run `visionserve models fetch`")
    return home


@pytest.fixture(scope="module", params=PACKAGED_MODELS)
def remover(request, model_home) -> BackgroundRemover:  # type: ignore[no-untyped-def]
    return BackgroundRemover(request.param, model_home, threads=1)


@pytest.mark.parametrize(
    ("shape", "colour", "seed"),
    [("ellipse", (200, 30, 40), 0), ("rounded", (30, 80, 200), 1), ("bottle", (40, 160, 60), 2)],
)
def test_cuts_out_the_known_shape(remover, shape, colour, seed) -> None:  # type: ignore[no-untyped-def]
    scene, truth = object_scene(shape=shape, colour=colour, seed=seed)
    out = remover.remove(scene)
    assert out.mode == "RGBA" and out.size == scene.size
    assert iou(np.asarray(out.getchannel("A")) > 127, truth) >= 0.9
    # Foreground colours are the input's, untouched.
    rgb_in = np.asarray(scene)[truth]
    rgb_out = np.asarray(out)[..., :3][truth]
    assert np.array_equal(rgb_in, rgb_out)


def test_existing_transparency_is_kept(remover) -> None:  # type: ignore[no-untyped-def]
    scene, _ = object_scene(size=(128, 96))
    rgba = scene.convert("RGBA")
    alpha = np.full((96, 128), 255, np.uint8)
    alpha[:, 64:] = 0  # the right half was already transparent
    rgba.putalpha(Image.fromarray(alpha))
    out = np.asarray(remover.remove(rgba).getchannel("A"))
    assert out[:, 64:].max() == 0


def test_unknown_model_lists_the_valid_names() -> None:
    with pytest.raises(UnknownModel) as caught:
        local_model("u3net")
    assert "u2netp" in caught.value.message and "isnet-general-use" in caught.value.message
    assert local_model("local_isnet").name == "isnet-general-use"


@pytest.mark.parametrize("name", sorted(LOCAL_MODELS))
def test_missing_weight_is_a_clear_startup_error(name, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(WeightError) as caught:
        BackgroundRemover(name, tmp_path)
    message = str(caught.value)
    model = LOCAL_MODELS[name]
    assert model.file in message and str(tmp_path) in message
    hint = "visionserve models fetch" if model.file in PACKAGED else "place the file there"
    assert hint in message


def test_available_lists_models_whose_file_is_present(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert available(tmp_path) == []
    (tmp_path / "silueta.onnx").write_bytes(b"x")
    assert [m.name for m in available(tmp_path)] == ["silueta"]
