"""Training, export and inference of anomaly models on generated textures (CPU, ~1-2 min)."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from tests.textures import TextureSample, defect, fabric
from visionserve.errors import Unprocessable
from visionserve.models.anomaly.inference import AnomalyModel, heatmap_png, overlay
from visionserve.models.anomaly.training import Sample, TrainResult, split, train

if TYPE_CHECKING:  # imported by pytest as a plugin (an earlier import blocks its rewrite)
    from tests.anomaly_fixtures import TrainedRun

pytestmark = pytest.mark.slow
# Shared with tests/conftest.py's plugins when registered there (trained once per session).


def rgb_of(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def held_out(run: TrainedRun, label: str) -> list[Sample]:
    return [s for s in run.val if s.label == label]


# --- split ---------------------------------------------------------------------------


def test_split_holds_out_normals_and_keeps_every_anomaly(tmp_path: Path) -> None:
    samples = [Sample(tmp_path / f"n{i}.png", "normal") for i in range(10)]
    samples += [Sample(tmp_path / f"a{i}.png", "anomalous") for i in range(3)]
    train_images, val = split(samples, holdout=0.2, seed=1)
    assert len(train_images) == 8
    assert sorted(s.label for s in val) == ["anomalous"] * 3 + ["normal"] * 2
    assert set(train_images).isdisjoint(s.path for s in val)
    assert split(samples, holdout=0.2, seed=1) == (train_images, val)  # deterministic


def test_split_needs_two_normals_and_known_labels(tmp_path: Path) -> None:
    one = [Sample(tmp_path / "n.png", "normal"), Sample(tmp_path / "a.png", "anomalous")]
    with pytest.raises(Unprocessable, match="at least 2 normal images"):
        split(one)
    two = [Sample(tmp_path / "n0.png", "normal"), Sample(tmp_path / "n1.png", "normal")]
    assert len(split(two, holdout=0.9)[0]) == 1  # always keeps one to train on
    with pytest.raises(Unprocessable, match="valid: normal, anomalous"):
        split([*two, Sample(tmp_path / "x.png", "bad")])  # type: ignore[arg-type]


# --- training quality, progress and exports -------------------------------------------


@pytest.mark.parametrize("run_name", ["trained_patchcore_run", "trained_padim_run"])
def test_memory_bank_models_find_the_defects(run_name: str, request: pytest.FixtureRequest) -> None:
    run: TrainedRun = request.getfixturevalue(run_name)
    m = run.result.metrics
    assert m["image_auroc"] >= 0.9, m
    assert m["pixel_auroc"] >= 0.9, m
    assert {"image_f1", "pixel_f1"} <= set(m)
    assert (m["train_images"], m["val_images"], m["val_anomalous"], m["epochs"]) == (16, 10, 6, 1)
    assert run.result.input_size == (128, 128)


def test_progress_increases_through_the_stages_to_one(trained_patchcore_run: TrainedRun) -> None:
    fractions = [f for f, _ in trained_patchcore_run.progress]
    stages = [info["stage"] for _, info in trained_patchcore_run.progress]
    assert fractions == sorted(fractions) and len(set(fractions)) == len(fractions)
    assert fractions[-1] == 1.0 and 0 < fractions[0] <= 0.8
    assert stages == sorted(stages, key=["fit", "test", "export"].index)
    assert {"fit", "test", "export"} == set(stages)
    assert all(isinstance(info["epoch"], int) for _, info in trained_patchcore_run.progress)
    assert max(f for f, i in trained_patchcore_run.progress if i["stage"] == "fit") <= 0.8


def test_export_dirs_hold_the_files_and_metadata(trained_patchcore: TrainResult) -> None:
    exports = trained_patchcore.exports
    assert set(exports) == {"openvino", "onnx", "pytorch"}
    files = {fmt: {p.name for p in d.iterdir()} for fmt, d in exports.items()}
    assert {"model.xml", "model.bin", "visionserve.json"} <= files["openvino"]
    assert {"model.onnx", "model.onnx.data", "visionserve.json"} <= files["onnx"]
    assert {"model.pt", "visionserve.json"} <= files["pytorch"]
    meta = json.loads((exports["onnx"] / "visionserve.json").read_text())
    assert meta["architecture"] == "patchcore"
    assert meta["input_size"] == [128, 128]
    assert meta["parameters"]["layers"] == ["blocks.2", "blocks.4"]
    assert meta["metrics"] == trained_patchcore.metrics


# --- the exports in their runtimes ----------------------------------------------------


def test_openvino_export_runs_in_anomalib_openvino_inferencer(
    trained_patchcore_run: TrainedRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anomalib.deploy import OpenVINOInferencer

    monkeypatch.chdir(tmp_path)  # it writes ./openvino_cache
    run = trained_patchcore_run
    inferencer = OpenVINOInferencer(
        run.result.exports["openvino"] / "model.xml",
        device="CPU",
        config={"INFERENCE_PRECISION_HINT": "f32"},
    )
    normal = inferencer.predict(rgb_of(held_out(run, "normal")[0].path))
    bad = inferencer.predict(rgb_of(held_out(run, "anomalous")[0].path))
    assert float(bad.pred_score.reshape(-1)[0]) > float(normal.pred_score.reshape(-1)[0])


def test_torch_export_runs_in_anomalib_torch_inferencer(
    trained_patchcore_run: TrainedRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anomalib.deploy import TorchInferencer

    monkeypatch.setenv("TRUST_REMOTE_CODE", "1")  # the .pt is a pickled module
    run = trained_patchcore_run
    inferencer = TorchInferencer(run.result.exports["pytorch"] / "model.pt", device="cpu")
    bad = held_out(run, "anomalous")[1]
    result = inferencer.predict(rgb_of(bad.path))
    ours = AnomalyModel.load(run.result.exports["openvino"]).predict(rgb_of(bad.path))
    assert float(result.pred_score.reshape(-1)[0]) == pytest.approx(ours.score, abs=1e-3)


def test_onnx_export_runs_in_onnxruntime(trained_patchcore_run: TrainedRun) -> None:
    import onnxruntime as ort

    run = trained_patchcore_run
    session = ort.InferenceSession(
        str(run.result.exports["onnx"] / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert session.get_inputs()[0].shape == [1, 3, 128, 128]  # fixed batch of 1
    bad = held_out(run, "anomalous")[2]
    x = (rgb_of(bad.path).astype(np.float32) / 255).transpose(2, 0, 1)[None]
    outputs = dict(
        zip([o.name for o in session.get_outputs()], session.run(None, {"input": x}), strict=True)
    )
    ours = AnomalyModel.load(run.result.exports["openvino"]).predict(rgb_of(bad.path))
    assert float(outputs["pred_score"].reshape(-1)[0]) == pytest.approx(ours.score, abs=1e-4)


# --- AnomalyModel ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def ov_model(trained_patchcore_run: TrainedRun) -> AnomalyModel:
    return AnomalyModel.load(trained_patchcore_run.result.exports["openvino"])


def test_anomaly_model_scores_defects_higher_and_maps_them(
    trained_patchcore_run: TrainedRun,
    ov_model: AnomalyModel,
) -> None:
    assert ov_model.input_size == (128, 128)
    assert ov_model.metadata["architecture"] == "patchcore"
    normal_scores = [
        ov_model.predict(rgb_of(s.path)).score for s in held_out(trained_patchcore_run, "normal")
    ]
    for sample in held_out(trained_patchcore_run, "anomalous"):
        pred = ov_model.predict(rgb_of(sample.path))
        assert pred.score > max(normal_scores)
        assert pred.is_anomalous
        mask = cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE) > 0
        # A thin scratch's peak may sit a pixel or two beside it.
        near = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        peak = np.unravel_index(int(pred.anomaly_map.argmax()), pred.anomaly_map.shape)
        assert near[peak], (sample.path, peak)


def test_no_held_out_image_sits_on_the_threshold(
    trained_patchcore_run: TrainedRun, ov_model: AnomalyModel
) -> None:
    # anomalib's F1 threshold was the lowest defect's own raw score, so that defect
    # scored 0.5 +- a few ulps and its label was a coin toss (0.499999881 -> normal with
    # 2 torch threads and seed 2); training's own F1 was 0.909 (5 of 6 found).
    assert trained_patchcore_run.result.metrics["image_f1"] == 1.0
    for sample in trained_patchcore_run.val:
        score = ov_model.predict(rgb_of(sample.path)).score
        assert abs(score - 0.5) > 0.05, (sample, score)


def _post_process(scores: list[float], labels: list[int], margin: bool) -> tuple[list, list]:
    """Run anomalib's PostProcessor through one validation pass, then score ``scores``."""
    from types import SimpleNamespace

    import torch
    from anomalib.data import InferenceBatch
    from anomalib.post_processing import PostProcessor

    from visionserve.models.anomaly.training import _ThresholdMargin

    post = PostProcessor()
    module = SimpleNamespace(post_processor=post)
    trainer = SimpleNamespace(sanity_checking=False)
    callbacks = [_ThresholdMargin()] if margin else []
    for cb in callbacks:
        cb.on_validation_epoch_start(trainer, module)
    for i in range(0, len(scores), 4):  # batches of 4
        batch = SimpleNamespace(
            pred_score=torch.tensor(scores[i : i + 4]),
            gt_label=torch.tensor(labels[i : i + 4]),
            anomaly_map=None,
            gt_mask=None,
        )
        post.on_validation_batch_end(trainer, module, batch)
        for cb in callbacks:
            cb.on_validation_batch_end(trainer, module, batch, None, i // 4)
    post.on_validation_epoch_end(trainer, module)
    for cb in callbacks:
        cb.on_validation_end(trainer, module)
    out = post(InferenceBatch(pred_score=torch.tensor(scores), anomaly_map=None))
    return out.pred_score.tolist(), out.pred_label.tolist()


def test_threshold_is_not_the_lowest_defect_score() -> None:
    normal, defects = [10.0, 11.0, 12.5, 14.0], [20.0, 31.0, 45.0, 52.0]
    scores, labels = normal + defects, [0] * 4 + [1] * 4
    # anomalib alone: the lowest defect normalises to exactly 0.5 and is labelled normal.
    plain, plain_labels = _post_process(scores, labels, margin=False)
    assert plain[4] == 0.5 and plain_labels[4] is False
    # In the gap (17.0): every image labelled as the F1 choice meant, with a margin.
    got, got_labels = _post_process(scores, labels, margin=True)
    assert got_labels == [False] * 4 + [True] * 4
    assert got[4] == pytest.approx(0.5 + 3.0 / 42.0)
    assert max(got[:4]) < 0.5 - 0.05 and min(got[4:]) > 0.5 + 0.05


def test_threshold_in_gap_leaves_one_class_and_edge_cases_alone() -> None:
    from visionserve.models.anomaly.training import threshold_in_gap

    assert threshold_in_gap([1.0, 2.0, 5.0, 7.0], [0, 0, 1, 1], 5.0) == 3.5
    # No anomalous images: anomalib's threshold is the highest normal score; keep it.
    assert threshold_in_gap([1.0, 2.0, 3.0], [0, 0, 0], 3.0) == 3.0
    # Nothing below the threshold, or a NaN threshold: unchanged.
    assert threshold_in_gap([4.0, 4.0, 6.0], [0, 1, 1], 4.0) == 4.0
    nan = threshold_in_gap([1.0, 2.0], [0, 1], float("nan"))
    assert nan != nan
    # NaN scores are ignored rather than poisoning the midpoint.
    assert threshold_in_gap([float("nan"), 1.0, 5.0], [0, 0, 1], 5.0) == 3.0


def test_anomaly_model_works_at_the_original_size(ov_model: AnomalyModel) -> None:
    # A 240x180 frame (not the model's 128x128): the map comes back at 240x180.
    image, mask = defect(cv2.resize(fabric(256, seed=7), (240, 180)), "square", seed=3)
    pred = ov_model.predict(image)
    assert pred.anomaly_map.shape == (180, 240)
    assert pred.anomaly_map.dtype == np.float32
    peak = np.unravel_index(int(pred.anomaly_map.argmax()), pred.anomaly_map.shape)
    assert mask[peak] > 0
    normal = ov_model.predict(cv2.resize(fabric(256, seed=8), (240, 180)))
    assert pred.score > normal.score

    png = heatmap_png(pred, image)
    assert png.startswith(b"\x89PNG")
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (180, 240, 3)
    bare = cv2.imdecode(np.frombuffer(heatmap_png(pred), np.uint8), cv2.IMREAD_COLOR)
    assert bare.shape == (180, 240, 3)
    frame = overlay(image, pred)
    assert frame.shape == image.shape and frame.dtype == np.uint8
    assert not np.array_equal(frame, image)


def test_anomaly_model_is_thread_safe(
    ov_model: AnomalyModel, texture_set: list[TextureSample]
) -> None:
    images = [rgb_of(s.path) for s in texture_set[-6:]] * 4
    expected = [ov_model.predict(img).score for img in images]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda img: ov_model.predict(img).score, images))
    assert got == pytest.approx(expected, abs=1e-6)


def test_anomaly_model_rejects_non_images(ov_model: AnomalyModel) -> None:
    from visionserve.errors import InvalidImage

    with pytest.raises(InvalidImage):
        ov_model.predict(np.zeros((4,), np.uint8))


# --- more architectures, edge cases ---------------------------------------------------


def test_dfm_trains_and_its_openvino_export_loads(
    tmp_path: Path,
    texture_set: list[TextureSample],
    anomaly_model_home: Path,
) -> None:
    train_images, val = split([Sample(*s) for s in texture_set])
    result = train(
        "dfm",
        {"image_size": 128, "pooling_kernel_size": 2},
        train_images,
        val,
        tmp_path,
        anomaly_model_home,
        formats=("openvino",),
    )
    assert result.metrics["image_auroc"] >= 0.9, result.metrics
    assert set(result.exports) == {"openvino"}
    model = AnomalyModel.load(result.exports["openvino"])
    normal = model.predict(rgb_of(val[0].path))
    bad = model.predict(rgb_of(val[-1].path))
    assert bad.score > normal.score


def test_training_without_anomalous_images_omits_auroc(
    tmp_path: Path,
    texture_set: list[TextureSample],
    anomaly_model_home: Path,
) -> None:
    normals = [Sample(*s) for s in texture_set if s.label == "normal"][:8]
    train_images, val = split(normals)
    calls: list[float] = []
    result = train(
        "patchcore",
        {"image_size": 64},
        train_images,
        val,
        tmp_path,
        anomaly_model_home,
        lambda f, info: calls.append(f),
        formats=(),
    )
    assert "image_auroc" not in result.metrics and "pixel_auroc" not in result.metrics
    assert "no anomalous images" in str(result.metrics["note"])
    assert result.exports == {} and calls[-1] == 1.0


def test_efficientad_without_teacher_fails_before_training(
    tmp_path: Path,
    texture_set: list[TextureSample],
) -> None:
    train_images, val = split([Sample(*s) for s in texture_set])
    home = tmp_path / "empty-home"
    with pytest.raises(Unprocessable) as err:
        train("efficientad", {}, train_images, val, tmp_path / "work", home)
    assert str(home / "anomalib" / "efficientad" / "pretrained_teacher_small.pth") in str(err.value)
    assert not (tmp_path / "work").exists()  # rejected before any work


def test_missing_image_is_a_clear_error(
    tmp_path: Path,
    anomaly_model_home: Path,
) -> None:
    ghost = tmp_path / "nope.png"
    with pytest.raises(Unprocessable, match=re.escape(str(ghost))):
        train(
            "patchcore",
            {"image_size": 64},
            [ghost],
            [Sample(ghost, "normal")],
            tmp_path / "work",
            anomaly_model_home,
            formats=(),
        )


# --- backbones -------------------------------------------------------------------------


def test_placed_backbone_is_registered_and_missing_ones_never_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import timm
    import torch

    from visionserve.models.anomaly.backbones import prepare_backbones

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    home = tmp_path / "home"
    (home / "timm").mkdir(parents=True)
    reference = timm.create_model("resnet18", pretrained=False).state_dict()
    torch.save(reference, home / "timm" / "resnet18.pth")  # as a user would place it
    torch.save({}, home / "timm" / "not_a_timm_model.pth")
    names = prepare_backbones(home)
    assert names == ["tf_efficientnet_lite0", "resnet18"]
    assert (home / "timm" / "tf_efficientnet_lite0.pth").is_file()
    loaded = timm.create_model("resnet18", pretrained=True).state_dict()
    assert torch.equal(loaded["layer3.0.conv1.weight"], reference["layer3.0.conv1.weight"])
    # wide_resnet50_2 has no file: timm is pointed at the expected path, not the hub.
    with pytest.raises(FileNotFoundError):
        timm.create_model("wide_resnet50_2", pretrained=True, features_only=True)
