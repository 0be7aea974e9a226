"""Train an anomalib model on labelled images and export it (OpenVINO, ONNX, PyTorch).

Runs in a training worker, never in a Serve replica: it imports torch, Lightning and
anomalib. Nothing here downloads: backbones come from the model home (see
:mod:`.backbones`) and EfficientAD's teacher and penalty images are local too (see
:mod:`.catalog`).

PatchCore's coreset step allocates a fresh patches×dims distance tensor per iteration,
so glibc's settings decide both its heap growth in threaded processes (DESIGN.md:
``MALLOC_MMAP_THRESHOLD_=131072``) and its speed: unless the heap keeps those pages,
every iteration page-faults them in again (sys time ≈ user time). Measured here on a
32k-patch coreset: ``MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=536870912``
took 4-11 s instead of 37-64 s at the same peak RSS as 131072 (~0.75 GB). Either way
they belong in the training process's environment (glibc reads them at start-up).
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

# The package __init__ has installed the torchvision shim's import hook by now.
from lightning.pytorch import Callback

from visionserve import torch_compat as compat
from visionserve.errors import Unprocessable, VisionServeError
from visionserve.models.anomaly import backbones, catalog

log = logging.getLogger(__name__)

Progress = Callable[[float, dict[str, Any]], None]
EXPORT_FORMATS = ("openvino", "onnx", "pytorch")
METADATA_FILE = "visionserve.json"
_LINKABLE = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Natural photos bundled with scikit-image: EfficientAD's offline penalty set.
_SKIMAGE_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "horse.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "microaneurysms.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "page.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
)


@dataclass(frozen=True)
class Sample:
    """A labelled image; ``mask`` marks the defect (any non-zero pixel) when known."""

    path: Path
    label: Literal["normal", "anomalous"]
    mask: Path | None = None


@dataclass
class TrainResult:
    """What :func:`train` produced.

    ``exports`` maps ``"openvino"``, ``"onnx"`` and ``"pytorch"`` to the directory
    holding that format's files (plus ``visionserve.json``).
    """

    metrics: dict[str, float | int | str]
    exports: dict[str, Path]
    input_size: tuple[int, int]
    seconds: float
    parameters: dict[str, Any] = field(default_factory=dict)


def split(
    samples: Sequence[Sample], *, holdout: float = 0.2, seed: int = 0
) -> tuple[list[Path], list[Sample]]:
    """Split labelled images into training images and a validation set.

    Training uses normal images only. Validation gets a held-out share of the normal
    images (at least one: the models calibrate their score normalisation and threshold
    on it) and every anomalous image. Training works without anomalous images; the
    metrics then omit AUROC/F1 and say why.

    Args:
        samples: The labelled images.
        holdout: Share of the normal images held out for validation (0 < holdout < 1).
        seed: Seed of the deterministic shuffle.

    Returns:
        ``(train_images, val_samples)``.

    Raises:
        Unprocessable: Unknown labels, or fewer than 2 normal images.
    """
    if not 0 < holdout < 1:
        raise Unprocessable(f"holdout must be between 0 and 1, got {holdout}")
    bad = sorted({s.label for s in samples} - {"normal", "anomalous"})
    if bad:
        raise Unprocessable(
            f"unknown labels {bad}; valid: normal, anomalous",
            details={"valid": ["normal", "anomalous"], "received": bad},
        )
    normals = [s for s in samples if s.label == "normal"]
    anomalous = [s for s in samples if s.label == "anomalous"]
    if len(normals) < 2:
        raise Unprocessable(
            f"training needs at least 2 normal images (one to learn from, one held out "
            f"to calibrate the threshold); got {len(normals)}",
            details={"normal_images": len(normals)},
        )
    n_hold = min(len(normals) - 1, max(1, round(holdout * len(normals))))
    order = list(range(len(normals)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_hold])
    train_images = [s.path for i, s in enumerate(normals) if i not in held]
    val = [s for i, s in enumerate(normals) if i in held] + anomalous
    return train_images, val


# --- dataset layout -------------------------------------------------------------------


@dataclass
class _Layout:
    train: Path
    normal_val: Path
    abnormal: Path | None
    masks: Path | None
    n_normal_val: int
    n_anomalous: int
    note: str | None


def _place(src: Path, dest_stem: Path) -> None:
    """Symlink ``src`` under a stable name; re-encode formats anomalib would skip."""
    src = Path(src)
    if not src.is_file():
        raise Unprocessable(f"image not found: {src}", details={"missing_file": str(src)})
    suffix = src.suffix.lower()
    if suffix in _LINKABLE:
        dest = dest_stem.with_suffix(suffix)
        try:
            dest.symlink_to(src.resolve())
        except OSError:  # filesystems without symlinks
            shutil.copyfile(src, dest)
        return
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(src) as img:
            img.convert("RGB").save(dest_stem.with_suffix(".png"))
    except (UnidentifiedImageError, OSError) as exc:
        raise Unprocessable(f"not a readable image: {src}") from exc


def _write_mask(src: Path, image: Path, dest: Path) -> None:
    """A 0/255 mask at its image's size (any non-zero source pixel is a defect)."""
    import cv2
    import numpy as np

    mask = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise Unprocessable(f"not a readable mask image: {src}")
    if mask.ndim == 3:  # colour or RGBA masks: any channel marks the defect
        mask = mask.max(axis=2)
    shape = cv2.imread(str(image), cv2.IMREAD_UNCHANGED)
    if shape is None:
        from PIL import Image

        with Image.open(image) as img:
            size = img.size
    else:
        size = (shape.shape[1], shape.shape[0])
    if (mask.shape[1], mask.shape[0]) != size:
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(dest), np.where(mask > 0, 255, 0).astype(np.uint8))


def _layout(train_images: Sequence[Path], val: Sequence[Sample], root: Path) -> _Layout:
    """Lay the images out as anomalib's ``Folder`` expects, names sorted in step with masks."""
    if root.exists():
        shutil.rmtree(root)
    dirs = {k: root / k for k in ("train", "val_good", "val_defect", "val_mask")}
    for d in dirs.values():
        d.mkdir(parents=True)
    if not train_images:
        raise Unprocessable("no training images (normal images are needed)")
    for i, path in enumerate(train_images):
        _place(Path(path), dirs["train"] / f"{i:06d}")
    normal_val = [s for s in val if s.label == "normal"]
    anomalous = [s for s in val if s.label == "anomalous"]
    if not normal_val:
        raise Unprocessable(
            "the validation set needs at least one normal image (use split())",
        )
    for i, s in enumerate(normal_val):
        _place(Path(s.path), dirs["val_good"] / f"{i:06d}")
    with_masks = bool(anomalous) and all(s.mask is not None for s in anomalous)
    for i, s in enumerate(anomalous):
        _place(Path(s.path), dirs["val_defect"] / f"{i:06d}")
        if with_masks:
            assert s.mask is not None
            _write_mask(Path(s.mask), Path(s.path), dirs["val_mask"] / f"{i:06d}.png")
    note = None
    if not anomalous:
        note = "no anomalous images: AUROC/F1 need some; the threshold is the highest normal score"
    elif not with_masks:
        note = "pixel metrics omitted: not every anomalous image has a mask"
    return _Layout(
        train=dirs["train"],
        normal_val=dirs["val_good"],
        abnormal=dirs["val_defect"] if anomalous else None,
        masks=dirs["val_mask"] if with_masks else None,
        n_normal_val=len(normal_val),
        n_anomalous=len(anomalous),
        note=note,
    )


def _penalty_dir(model_home: Path, workdir: Path) -> Path:
    """An ImageFolder root for EfficientAD's penalty images (see catalog.penalty_source)."""
    root = workdir / "penalty"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    user = catalog.penalty_source(model_home)
    if user is not None:
        # ImageFolder wants class folders; a link makes any placed layout one "class".
        (root / "images").symlink_to(user.resolve(), target_is_directory=True)
        return root
    import skimage

    photos = Path(skimage.__file__).parent / "data"
    (root / "skimage").mkdir()
    for name in _SKIMAGE_PHOTOS:
        if (photos / name).is_file():
            (root / "skimage" / name).symlink_to(photos / name)
    log.info("EfficientAD penalty images: scikit-image's sample photos (no %s)", user)
    return root


# --- model and progress ---------------------------------------------------------------


def _load_teacher(model: Any, path: Path) -> None:
    """Replaces EfficientAd.prepare_pretrained_model, which downloads the teacher."""
    import torch

    state = torch.load(path, map_location=model.device, weights_only=True)
    model.model.teacher.load_state_dict(state)


def _build_model(
    arch: catalog.Architecture, params: dict[str, Any], model_home: Path, workdir: Path
) -> Any:
    import anomalib.models

    cls = getattr(anomalib.models, arch.anomalib_class)
    size = (params["image_size"], params["image_size"])
    kwargs = {k: v for k, v in params.items() if k not in ("image_size", "max_epochs")}
    if arch.name == "efficientad":
        kwargs["imagenet_dir"] = _penalty_dir(model_home, workdir)
    model = cls(
        **kwargs,
        pre_processor=cls.configure_pre_processor(image_size=size),
        visualizer=False,  # no annotated test images written to disk
    )
    if arch.name == "efficientad":
        # An instance attribute (removed after fit, before the pickled torch export) so
        # the teacher comes from the model home without touching anomalib's class.
        model.prepare_pretrained_model = partial(
            _load_teacher, model, catalog.teacher_file(model_home, params["model_size"])
        )
    return model


class _Progress(Callback):
    """Reports fit as 0-0.8 and test as 0.8-0.85 of the job, never decreasing.

    ``with_loss``: memory-bank models return a dummy 0 loss; report losses only for
    gradient-trained ones.
    """

    def __init__(self, report: Progress, with_loss: bool) -> None:
        self.report = report
        self.with_loss = with_loss
        self.last = -1.0
        self.loss: Any = None  # the latest training batch loss

    def emit(self, fraction: float, stage: str, epoch: int, loss: Any = None) -> None:
        fraction = min(1.0, fraction)
        if fraction <= self.last:
            return
        self.last = fraction
        info: dict[str, Any] = {"epoch": epoch, "stage": stage}
        if loss is not None and self.with_loss:
            value = float(loss.detach() if hasattr(loss, "detach") else loss)
            if math.isfinite(value):
                info["loss"] = value
        self.report(fraction, info)

    @staticmethod
    def _fit(trainer: Any, within_epoch: float) -> float:
        epochs = max(1, trainer.max_epochs or 1)
        return 0.8 * (trainer.current_epoch + within_epoch) / epochs

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        n = max(1, trainer.num_training_batches)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self.loss = loss if loss is not None else self.loss
        frac = self._fit(trainer, 0.75 * (batch_idx + 1) / n)
        self.emit(frac, "fit", trainer.current_epoch + 1, self.loss)

    def on_validation_batch_end(  # type: ignore[no-untyped-def]
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if trainer.sanity_checking:
            return
        n = max(1, sum(trainer.num_val_batches))
        frac = self._fit(trainer, 0.75 + 0.25 * (batch_idx + 1) / n)
        self.emit(frac, "fit", trainer.current_epoch + 1, self.loss)

    def on_test_batch_end(  # type: ignore[no-untyped-def]
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        n = max(1, sum(trainer.num_test_batches))
        self.emit(0.8 + 0.05 * (batch_idx + 1) / n, "test", trainer.current_epoch)


def threshold_in_gap(scores: Any, labels: Any, threshold: float) -> float:
    """Move an F1-adaptive threshold off the validation score it was picked from.

    anomalib's ``F1AdaptiveThreshold`` picks the threshold from the precision-recall
    curve, which counts ``score >= threshold`` as anomalous, so the threshold *is* the
    raw score of one anomalous validation image (the lowest one when normal and
    anomalous images separate). Its post-processor then labels ``score > threshold``
    (a normalised score above 0.5): that image lands on exactly 0.5 and is called
    normal, and the same image at inference is labelled by float rounding alone
    (batch size, thread count, OpenVINO vs torch kernels move it by a few ulps).

    The midpoint between the threshold and the highest validation score below it
    classifies every validation image as the F1 choice did, with a margin on both
    sides. Nothing changes without both labels (anomalib then uses the highest normal
    score, which ``>`` already labels normal) or without a lower score.

    Args:
        scores: Raw (un-normalised) validation image scores.
        labels: Their labels (1 anomalous, 0 normal).
        threshold: The raw threshold anomalib computed from them.

    Returns:
        The raw threshold to use.
    """
    import torch

    scores = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    labels = torch.as_tensor(labels).reshape(-1).bool()
    t = float(threshold)
    if not math.isfinite(t) or scores.numel() != labels.numel():
        return t
    finite = torch.isfinite(scores)
    scores, labels = scores[finite], labels[finite]
    if not (bool(labels.any()) and bool((~labels).any())):
        return t
    below = scores[scores < t]
    if below.numel() == 0:
        return t
    return (float(below.max()) + t) / 2


class _ThresholdMargin(Callback):
    """Puts the image threshold between validation scores (see :func:`threshold_in_gap`).

    Collects raw scores during each validation run and adjusts the post-processor's
    threshold in ``on_validation_end``, after every ``on_validation_epoch_end`` (where
    the post-processor computes it) whatever the callback order.
    """

    def __init__(self) -> None:
        self.scores: list[Any] = []
        self.labels: list[Any] = []
        self.adjusted: tuple[float, float] | None = None  # (anomalib's, ours)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
        self.scores, self.labels = [], []

    def on_validation_batch_end(  # type: ignore[no-untyped-def]
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if trainer.sanity_checking:
            return
        score = getattr(outputs, "pred_score", None)
        label = getattr(outputs, "gt_label", None)
        if score is not None and label is not None:
            self.scores.append(score.detach().float().cpu().reshape(-1))
            self.labels.append(label.detach().cpu().reshape(-1))

    def on_validation_end(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
        post = getattr(pl_module, "post_processor", None)
        if trainer.sanity_checking or post is None or not self.scores:
            return
        buffer = getattr(post, "_image_threshold", None)
        if buffer is None or not getattr(post, "enable_thresholding", False):
            return
        import torch

        old = float(buffer)
        new = threshold_in_gap(torch.cat(self.scores), torch.cat(self.labels), old)
        if new != old:
            buffer.fill_(new)
            self.adjusted = (old, new)
            log.info("image threshold %.6g moved into the score gap: %.6g", old, new)


# --- export -----------------------------------------------------------------------------


def _export(
    model: Any, formats: Sequence[str], root: Path, size: tuple[int, int], step: Callable[[], None]
) -> dict[str, Path]:
    """Export with a fixed 1×3×H×W input; OpenVINO is converted from the ONNX file."""
    import tempfile

    out: dict[str, Path] = {}
    if "pytorch" in formats:
        out["pytorch"] = model.to_torch(export_root=root, model_file_name="model").parent
        step()
    if "onnx" in formats or "openvino" in formats:
        with tempfile.TemporaryDirectory() as tmp:
            onnx_root = root if "onnx" in formats else Path(tmp)
            # dynamic_axes={} gives a static batch of 1 (anomalib's default is dynamic and
            # traces with 2); opset 18 is what torch 2.13 emits (lower fails to convert).
            onnx_path = model.to_onnx(
                export_root=onnx_root,
                model_file_name="model",
                input_size=size,
                dynamic_axes={},
                opset_version=18,
            )
            if "onnx" in formats:
                out["onnx"] = onnx_path.parent
                step()
            if "openvino" in formats:
                # What anomalib's to_openvino does, minus a second ONNX export.
                import openvino as ov

                ov_dir = root / "weights" / "openvino"
                ov_dir.mkdir(parents=True, exist_ok=True)
                ov.save_model(
                    ov.convert_model(onnx_path), ov_dir / "model.xml", compress_to_fp16=False
                )
                out["openvino"] = ov_dir
                step()
    return {f: out[f] for f in formats}


def _metrics(
    results: Sequence[Mapping[str, Any]], layout: _Layout, n_train: int, epochs: int
) -> dict[str, float | int | str]:
    names = {
        "image_AUROC": "image_auroc",
        "image_F1Score": "image_f1",
        "pixel_AUROC": "pixel_auroc",
        "pixel_F1Score": "pixel_f1",
    }
    out: dict[str, float | int | str] = {}
    row = results[0] if results else {}
    for key, name in names.items():
        if name.startswith("pixel") and layout.masks is None:
            continue
        value = row.get(key)
        if value is not None and math.isfinite(float(value)):
            out[name] = round(float(value), 6)
    out.update(
        train_images=n_train,
        val_images=layout.n_normal_val + layout.n_anomalous,
        val_anomalous=layout.n_anomalous,
        epochs=epochs,
    )
    if layout.note:
        out["note"] = layout.note
    return out


# --- the entry point -------------------------------------------------------------------


def train(
    architecture: str,
    parameters: dict[str, Any] | None,
    train_images: Sequence[Path],
    val: Sequence[Sample],
    workdir: Path,
    model_home: Path,
    progress: Progress | None = None,
    *,
    formats: Sequence[str] = EXPORT_FORMATS,
    seed: int = 0,
    threads: int | None = None,
) -> TrainResult:
    """Train ``architecture`` on normal images, evaluate on ``val`` and export it.

    Args:
        architecture: A catalog name (``patchcore``, ``padim``, ...).
        parameters: Training parameters; validated and defaults-filled by
            :func:`catalog.validate`.
        train_images: Normal images to learn from.
        val: Held-out normal images and anomalous ones (with masks for pixel metrics);
            see :func:`split`.
        workdir: A per-job scratch directory (data layout, Lightning files, exports).
        model_home: The model home (backbones, EfficientAD teacher).
        progress: Called as ``progress(fraction, {"epoch", "stage", "loss"?})`` with
            increasing fractions, ending at 1.0; fit takes 0-0.8, test 0.8-0.85, export
            the rest. An exception it raises (e.g. a cancellation) stops training.
        formats: Export formats, a subset of ``openvino``, ``onnx``, ``pytorch``.
        seed: Seed for sampling steps (coreset, PaDiM feature choice, weight init).
        threads: Set torch's intra-op threads first (see :func:`compat.threads`); None
            leaves the process setting alone (Ray sets ``OMP_NUM_THREADS`` for workers).

    Returns:
        Metrics (``image_auroc``, ``pixel_auroc`` where every anomalous image has a mask,
        ``image_f1``, ``pixel_f1``, ``train_images``, ``val_images``, ``epochs``, and a
        ``note`` when some are omitted), export directories, input size and seconds.

    Raises:
        Unprocessable: Invalid parameters or data, missing files, or a failure inside
            anomalib (message names the architecture and the stage).
    """
    started = time.monotonic()
    params = catalog.validate(architecture, parameters, model_home)
    arch = catalog.ARCHITECTURES[architecture]
    bad = sorted(set(formats) - set(EXPORT_FORMATS))
    if bad:
        raise Unprocessable(
            f"unknown export formats {bad}; valid: {', '.join(EXPORT_FORMATS)}",
            details={"valid": list(EXPORT_FORMATS)},
        )
    report = progress or (lambda fraction, info: None)
    workdir = Path(workdir)
    size = (params["image_size"], params["image_size"])
    stage = "prepare"
    try:
        compat.install()
        if threads is not None:
            compat.threads(threads)
        backbones.prepare_backbones(model_home)
        layout = _layout(train_images, val, workdir / "data")
        import torch
        from anomalib.data import Folder
        from anomalib.engine import Engine
        from lightning.pytorch import seed_everything

        seed_everything(seed, verbose=False)
        model = _build_model(arch, params, model_home, workdir)
        datamodule = Folder(
            name="dataset",
            normal_dir=layout.train,
            abnormal_dir=layout.abnormal,
            normal_test_dir=layout.normal_val,
            mask_dir=layout.masks,
            train_batch_size=1 if arch.name == "efficientad" else 8,
            eval_batch_size=8,
            num_workers=0,  # no forked loaders inside a worker process
            test_split_mode="from_dir",
            val_split_mode="same_as_test",
            seed=seed,
        )
        callback = _Progress(report, arch.gradient_trained)
        margin = _ThresholdMargin()
        engine = Engine(
            accelerator="gpu" if torch.cuda.is_available() else "cpu",
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=workdir / "lightning",
            max_epochs=params.get("max_epochs", 1),
            callbacks=[callback, margin],
        )
        stage = "fit"
        engine.fit(model=model, datamodule=datamodule)
        epochs = int(engine.trainer.current_epoch)
        if arch.name == "efficientad":
            del model.prepare_pretrained_model  # keep the pickled export pure anomalib
        stage = "test"
        results: Sequence[Mapping[str, Any]] = []  # AUROC/F1 of all-normal data mean nothing
        if layout.n_anomalous:
            results = engine.test(model=model, datamodule=datamodule, verbose=False)
        metrics = _metrics(results, layout, len(train_images), epochs)

        stage = "export"
        if (workdir / "export").exists():  # a re-run in the same workdir
            shutil.rmtree(workdir / "export")
        done = [0]

        def step() -> None:
            done[0] += 1
            callback.emit(0.85 + 0.15 * done[0] / (len(formats) + 1), "export", epochs)

        callback.emit(0.85, "export", epochs)
        # Detach the trainer: EfficientAd.__getstate__ forgets to, and the pickled torch
        # export would then drag the trainer, data module and callbacks along.
        model.trainer = None
        model.eval()
        exports = _export(model, formats, workdir / "export", size, step)
        for fmt, folder in exports.items():
            meta = {
                "architecture": arch.name,
                "display_name": arch.display_name,
                "format": fmt,
                "parameters": params,
                "input_size": list(size),
                "metrics": metrics,
                "files": sorted(p.name for p in folder.iterdir()),
            }
            (folder / METADATA_FILE).write_text(json.dumps(meta, indent=2))
        callback.emit(1.0, "export", epochs)
    except VisionServeError:
        raise
    except Exception as exc:
        raise Unprocessable(
            f"{arch.display_name} training failed during {stage}: {type(exc).__name__}: {exc}",
            code="training_failed",
            details={"architecture": arch.name, "stage": stage},
        ) from exc
    return TrainResult(
        metrics=metrics,
        exports=exports,
        input_size=size,
        seconds=round(time.monotonic() - started, 3),
        parameters=params,
    )
