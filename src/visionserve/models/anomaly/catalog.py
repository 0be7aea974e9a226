"""The trainable anomaly architectures, their parameters and what each needs on disk.

Importable without torch: the API lists and validates training requests from here.
Only a backbone outside the known families (a user-placed timm file) makes
:func:`validate` import timm, to read its feature layer names.

Files an architecture may need, all under the model home:

- ``timm/<backbone>.pth`` (or ``.safetensors``): pretrained backbone weights, see
  :mod:`.backbones`; ``tf_efficientnet_lite0`` is built in. FastFlow accepts only
  ``resnet18``, ``wide_resnet50_2``, ``cait_m48_448`` and
  ``deit_base_distilled_patch16_384`` (anomalib hard-codes the list), none of which
  ships in a package, so it needs a placed file or ``pre_trained=false``.
- ``anomalib/efficientad/pretrained_teacher_<small|medium>.pth``: EfficientAD's
  distilled teacher (from anomalib's ``efficientad_pretrained_weights.zip``).
- ``anomalib/imagenette/``: optional ImageFolder of natural images for EfficientAD's
  penalty loss (ImageNette in the paper). Without it the photos bundled with
  scikit-image are used, see :func:`penalty_source`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from visionserve.errors import Unprocessable
from visionserve.models.anomaly import backbones

ParamType = Literal["string", "integer", "number", "boolean", "array"]
FASTFLOW_BACKBONES = (
    "resnet18",
    "wide_resnet50_2",
    "cait_m48_448",
    "deit_base_distilled_patch16_384",
)
# Transformer backbones take one fixed input size.
_FIXED_SIZE = {"cait_m48_448": 448, "deit_base_distilled_patch16_384": 384}
EFFICIENTAD_SIZES = ("small", "medium")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# Feature stages (timm features_only: module names and channels) of the usual backbones,
# so validation needs no timm import for them.
_RESNET_LAYERS = ("act1", "layer1", "layer2", "layer3", "layer4")
_KNOWN_FEATURES: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    backbones.LITE0: (
        ("blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"),
        (16, 24, 40, 112, 320),
    ),
    "resnet18": (_RESNET_LAYERS, (64, 64, 128, 256, 512)),
    "resnet34": (_RESNET_LAYERS, (64, 64, 128, 256, 512)),
    "resnet50": (_RESNET_LAYERS, (64, 256, 512, 1024, 2048)),
    "wide_resnet50_2": (_RESNET_LAYERS, (64, 256, 512, 1024, 2048)),
}


@dataclass(frozen=True)
class Param:
    """One training parameter, described in the JSON-schema-like form the API lists."""

    type: ParamType
    default: Any
    description: str
    options: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    multiple_of: int | None = None

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "default": self.default}
        if self.type == "array":
            out["items"] = {"type": "string"}
        for key in ("options", "minimum", "maximum", "multiple_of"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if key == "options" else value
        out["description"] = self.description
        return out


@dataclass(frozen=True)
class Architecture:
    """A trainable anomalib model and its parameters."""

    name: str
    display_name: str
    description: str
    anomalib_class: str
    params: dict[str, Param]
    gradient_trained: bool = False
    # Stage indices (into the backbone's feature stages) of the default feature layers.
    layer_stages: tuple[int, ...] = ()
    # The backbone's weights are needed even with pre_trained=false (STFPM's teacher).
    needs_pretrained: bool = False
    backbone_choices: tuple[str, ...] | None = None  # None: any available backbone
    requirements: str = ""


def _image_size(minimum: int = 64) -> Param:
    return Param(
        "integer",
        256,
        "Side of the square model input in pixels; images are resized to it. Larger "
        "finds smaller defects but trains and infers slower (PatchCore memory grows "
        "with its square).",
        minimum=minimum,
        maximum=1024,
        multiple_of=32,
    )


def _backbone(default: str, choices: tuple[str, ...] | None = None) -> Param:
    return Param(
        "string",
        default,
        "timm feature extractor. tf_efficientnet_lite0 is built in; other ImageNet "
        "weights are used when placed at <model_home>/timm/<name>.pth.",
        options=choices,
    )


_PRE_TRAINED = Param(
    "boolean",
    True,
    "Use the backbone's ImageNet weights; false uses random weights (a baseline, "
    "much worse on real data).",
)
_MAX_EPOCHS = Param(
    "integer",
    10,
    "Training epochs (gradient-trained models). Small on CPU; the papers use 100+.",
    minimum=1,
    maximum=1000,
)


def _layers(example: str, single: bool = False) -> Param:
    what = "Backbone feature layer" if single else "Backbone feature layers"
    return Param(
        "string" if single else "array",
        example if single else example.split(","),
        f"{what}; the default depends on the backbone (tf_efficientnet_lite0: "
        f"{example.replace(',', ', ')}; ResNets: layerN names).",
    )


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            "patchcore",
            "PatchCore",
            "Memory bank of pretrained patch features scored by nearest-neighbour "
            "distance. A strong default: one pass over the images, no gradient training.",
            "Patchcore",
            {
                "image_size": _image_size(),
                "backbone": _backbone(backbones.LITE0),
                "layers": _layers("blocks.2,blocks.4"),
                "pre_trained": _PRE_TRAINED,
                "coreset_sampling_ratio": Param(
                    "number",
                    0.1,
                    "Share of patch features kept in the memory bank; lower trains and "
                    "infers faster with less memory.",
                    minimum=0.001,
                    maximum=1.0,
                ),
                "num_neighbors": Param(
                    "integer",
                    9,
                    "Nearest neighbours used to re-weight the image score.",
                    minimum=1,
                    maximum=100,
                ),
            },
            layer_stages=(2, 3),
            requirements="Pretrained backbone weights (tf_efficientnet_lite0 is built in).",
        ),
        Architecture(
            "padim",
            "PaDiM",
            "A Gaussian per feature-map position over pretrained features, scored by "
            "Mahalanobis distance. Fast to train; memory grows with the image size.",
            "Padim",
            {
                "image_size": _image_size(),
                "backbone": _backbone(backbones.LITE0),
                "layers": _layers("blocks.1,blocks.2,blocks.4"),
                "pre_trained": _PRE_TRAINED,
                "n_features": Param(
                    "integer",
                    100,
                    "Feature dimensions kept (randomly chosen) out of the layers' "
                    "channels; at most their sum.",
                    minimum=1,
                    maximum=4096,
                ),
            },
            layer_stages=(1, 2, 3),
            requirements="Pretrained backbone weights (tf_efficientnet_lite0 is built in).",
        ),
        Architecture(
            "efficientad",
            "EfficientAD",
            "Student–teacher network plus an autoencoder; the fastest at inference, "
            "trained with gradients (batch size 1), input at least 256 px.",
            "EfficientAd",
            {
                "image_size": _image_size(minimum=256),
                "model_size": Param(
                    "string",
                    "small",
                    "Student/teacher size; medium is slower and more accurate.",
                    options=EFFICIENTAD_SIZES,
                ),
                "max_epochs": _MAX_EPOCHS,
            },
            gradient_trained=True,
            requirements=(
                "The pretrained teacher at <model_home>/anomalib/efficientad/"
                "pretrained_teacher_<model_size>.pth (from anomalib's "
                "efficientad_pretrained_weights.zip). Optional: an ImageFolder of natural "
                "images at <model_home>/anomalib/imagenette for the penalty loss; without "
                "it the photos bundled with scikit-image are used."
            ),
        ),
        Architecture(
            "stfpm",
            "STFPM",
            "A student network trained to reproduce a pretrained teacher's feature "
            "pyramid; anomalies are where they disagree. Needs many epochs.",
            "Stfpm",
            {
                "image_size": _image_size(),
                "backbone": _backbone(backbones.LITE0),
                "layers": _layers("blocks.1,blocks.2,blocks.4"),
                "max_epochs": _MAX_EPOCHS,
            },
            gradient_trained=True,
            layer_stages=(1, 2, 3),
            needs_pretrained=True,
            requirements="Pretrained backbone weights for the teacher (built in for "
            "tf_efficientnet_lite0).",
        ),
        Architecture(
            "dfm",
            "DFM",
            "PCA of pooled deep features, scored by feature reconstruction error (its "
            "likelihood score gives no anomaly map, so it is not offered). Very fast; good "
            "image scores, coarse anomaly maps.",
            "Dfm",
            {
                "image_size": _image_size(),
                "backbone": _backbone(backbones.LITE0),
                "layer": _layers("blocks.4", single=True),
                "pre_trained": _PRE_TRAINED,
                "pooling_kernel_size": Param(
                    "integer",
                    4,
                    "Average-pooling kernel applied to the features before PCA.",
                    minimum=1,
                    maximum=16,
                ),
                "pca_level": Param(
                    "number",
                    0.97,
                    "Share of variance the PCA keeps.",
                    minimum=0.5,
                    maximum=0.999,
                ),
            },
            layer_stages=(3,),
            requirements="Pretrained backbone weights (tf_efficientnet_lite0 is built in).",
        ),
        Architecture(
            "fastflow",
            "FastFlow",
            "A 2D normalizing flow over backbone features; anomalies get low likelihood. "
            "Gradient-trained; anomalib supports only ResNet-18/Wide-ResNet-50-2 and "
            "CaiT/DeiT backbones.",
            "Fastflow",
            {
                "image_size": _image_size(),
                "backbone": _backbone("resnet18", FASTFLOW_BACKBONES),
                "pre_trained": _PRE_TRAINED,
                "flow_steps": Param(
                    "integer", 8, "Flow steps per feature scale.", minimum=1, maximum=32
                ),
                "conv3x3_only": Param(
                    "boolean", False, "Use only 3×3 convolutions in the flow subnets."
                ),
                "hidden_ratio": Param(
                    "number",
                    1.0,
                    "Hidden channels of the flow subnets relative to their input.",
                    minimum=0.1,
                    maximum=4.0,
                ),
                "max_epochs": _MAX_EPOCHS,
            },
            gradient_trained=True,
            backbone_choices=FASTFLOW_BACKBONES,
            requirements=(
                "ImageNet weights for its backbone at <model_home>/timm/<backbone>.pth "
                "(resnet18, wide_resnet50_2, cait_m48_448 or "
                "deit_base_distilled_patch16_384; torchvision's ResNet files work as is), "
                "or pre_trained=false for random features. cait_m48_448 needs "
                "image_size 448, deit_base_distilled_patch16_384 needs 384."
            ),
        ),
    )
}


def teacher_file(model_home: Path, model_size: str = "small") -> Path:
    """Where EfficientAD's pretrained teacher for ``model_size`` must be placed."""
    return Path(model_home) / "anomalib" / "efficientad" / f"pretrained_teacher_{model_size}.pth"


def imagenette_dir(model_home: Path) -> Path:
    """Where a user may place an ImageFolder of natural images for EfficientAD's penalty."""
    return Path(model_home) / "anomalib" / "imagenette"


def penalty_source(model_home: Path) -> Path | None:
    """The user's penalty image folder for EfficientAD, or None to use the fallback.

    EfficientAD penalises the student for imitating the teacher on out-of-distribution
    natural images (ImageNette in the paper and anomalib, downloaded when missing). We
    never download: a placed ``<model_home>/anomalib/imagenette`` (any nesting; all
    images below it are used) wins; otherwise training uses the ~20 natural photos that
    ship inside scikit-image (a dependency of anomalib). Any diverse natural images
    serve the penalty's purpose (keep the student from generalising beyond the normal
    data); a small set weakens that regulariser somewhat but keeps training offline
    and correct. Using the training images themselves would be wrong: the penalty
    would fight the distillation loss on exactly those images.
    """
    folder = imagenette_dir(model_home)
    if not folder.is_dir():
        return None
    for path in folder.rglob("*"):
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            return folder
    return None


@functools.lru_cache(maxsize=32)
def _timm_features(name: str) -> tuple[tuple[str, ...], tuple[int, ...]] | None:
    from visionserve import torch_compat as compat

    compat.install()
    import timm

    if not timm.is_model(name):
        return None
    try:
        model = timm.create_model(name, pretrained=False, features_only=True)
    except Exception:  # a timm model without features_only support
        return None
    info: Any = model.feature_info
    return tuple(info.module_name()), tuple(info.channels())


def feature_layers(backbone: str) -> tuple[tuple[str, ...], tuple[int, ...]] | None:
    """Feature layer names and channels of ``backbone``, or None if timm cannot tell."""
    if backbone in _KNOWN_FEATURES:
        return _KNOWN_FEATURES[backbone]
    return _timm_features(backbone)


def _backbone_param(arch: Architecture, model_home: Path) -> Param | None:
    base = arch.params.get("backbone")
    if base is None:
        return None
    choices = arch.backbone_choices or tuple(backbones.available_backbones(model_home))
    default = base.default if base.default in choices or not choices else choices[0]
    return Param(base.type, default, base.description, options=choices)


def parameters_for(arch: Architecture, model_home: Path) -> dict[str, Param]:
    """The architecture's parameters with the backbone options of this model home."""
    params = dict(arch.params)
    backbone = _backbone_param(arch, model_home)
    if backbone is not None:
        params["backbone"] = backbone
    return params


def unavailable_reason(arch: Architecture, model_home: Path) -> str | None:
    """Why ``arch`` cannot train with its default parameters here, or None."""
    if arch.name == "efficientad":
        path = teacher_file(model_home, "small")
        medium = teacher_file(model_home, "medium")
        if not path.is_file() and not medium.is_file():
            return (
                f"EfficientAD's pretrained teacher is missing: place "
                f"pretrained_teacher_small.pth at {path} (or the medium one at {medium})"
            )
        return None
    if arch.backbone_choices is not None:
        present = [b for b in arch.backbone_choices if backbones.weight_file(model_home, b)]
        if not present:
            first = backbones.expected_file(model_home, arch.backbone_choices[0])
            return (
                f"{arch.display_name} needs ImageNet weights for one of "
                f"{', '.join(arch.backbone_choices)}: place e.g. torchvision's resnet18 "
                f"weights at {first}; or train with pre_trained=false (random features)"
            )
        return None
    if not backbones.available_backbones(model_home):
        target = backbones.expected_file(model_home, backbones.LITE0)
        return f"no pretrained backbone: place one at {target}"
    return None


def trainable_models(model_home: Path) -> list[dict[str, Any]]:
    """The API listing of trainable architectures.

    Args:
        model_home: The model home (decides backbone options and availability).

    Returns:
        One dict per architecture: ``name``, ``display_name``, ``description``,
        ``parameters`` (name -> spec), ``available``, ``requirements`` and
        ``unavailable_reason`` (None when available).
    """
    out = []
    for arch in ARCHITECTURES.values():
        reason = unavailable_reason(arch, model_home)
        out.append(
            {
                "name": arch.name,
                "display_name": arch.display_name,
                "description": arch.description,
                "parameters": {k: p.spec() for k, p in parameters_for(arch, model_home).items()},
                "available": reason is None,
                "requirements": arch.requirements,
                "unavailable_reason": reason,
            }
        )
    return out


def _invalid(message: str, name: str, **details: Any) -> Unprocessable:
    return Unprocessable(message, details={"parameter": name, **details})


def _check_type(arch: Architecture, name: str, param: Param, value: Any) -> Any:
    """``value`` converted to the parameter's type, or a 422 that says what was expected."""
    ok: bool
    if param.type == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif param.type == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif param.type == "boolean":
        ok = isinstance(value, bool)
    elif param.type == "string":
        ok = isinstance(value, str)
    else:
        ok = (
            isinstance(value, list | tuple)
            and len(value) > 0
            and all(isinstance(v, str) for v in value)
        )
        if ok and len(set(value)) != len(value):
            raise _invalid(f"{arch.name}: {name} lists a layer twice: {list(value)}", name)
        value = list(value) if ok else value
    if not ok:
        what = {"array": "a non-empty array of strings", "integer": "an integer"}.get(
            param.type, f"a {param.type}"
        )
        raise _invalid(
            f"{arch.name}: {name} must be {what}, got {value!r}",
            name,
            expected=param.type,
            received=value,
        )
    if param.options is not None and param.type != "array" and value not in param.options:
        raise _invalid(
            f"{arch.name}: {name} {value!r} is not one of: {', '.join(map(str, param.options))}",
            name,
            valid=list(param.options),
            received=value,
        )
    if param.minimum is not None and value < param.minimum:
        raise _invalid(f"{arch.name}: {name} must be >= {param.minimum}, got {value}", name)
    if param.maximum is not None and value > param.maximum:
        raise _invalid(f"{arch.name}: {name} must be <= {param.maximum}, got {value}", name)
    if param.multiple_of and value % param.multiple_of:
        raise _invalid(
            f"{arch.name}: {name} must be a multiple of {param.multiple_of}, got {value}", name
        )
    return value


def _check_layers(arch: Architecture, out: dict[str, Any], given: bool) -> None:
    key = "layers" if "layers" in arch.params else "layer" if "layer" in arch.params else None
    if key is None:
        return
    backbone = out["backbone"]
    info = feature_layers(backbone)
    if info is None:
        raise _invalid(
            f"{arch.name}: backbone {backbone!r} is not a timm model with feature layers",
            "backbone",
        )
    names, channels = info
    if not given:
        picked = [names[min(i, len(names) - 1)] for i in arch.layer_stages]
        out[key] = picked[0] if key == "layer" else list(dict.fromkeys(picked))
    chosen = [out[key]] if key == "layer" else out[key]
    bad = [layer for layer in chosen if layer not in names]
    if bad:
        raise _invalid(
            f"{arch.name}: {key} {', '.join(map(repr, bad))} not in {backbone}'s feature "
            f"layers; valid: {', '.join(names)}",
            key,
            valid=list(names),
        )
    if arch.name == "padim":
        dims = sum(channels[names.index(layer)] for layer in chosen)
        if out["n_features"] > dims:
            raise _invalid(
                f"padim: n_features {out['n_features']} exceeds the {dims} channels of "
                f"{backbone} {', '.join(chosen)}",
                "n_features",
                maximum=dims,
            )


def validate(
    architecture: str, parameters: dict[str, Any] | None, model_home: Path
) -> dict[str, Any]:
    """Check a training request and fill in the defaults.

    Args:
        architecture: An architecture name (see :data:`ARCHITECTURES`).
        parameters: The requested parameters; missing ones take their defaults.
        model_home: The model home (backbone options, EfficientAD teacher).

    Returns:
        Every parameter of the architecture, defaults filled in (feature layers follow
        the chosen backbone).

    Raises:
        Unprocessable: Unknown architecture or parameter names (the message and
            ``details["valid"]`` list the valid ones), wrong types, values outside the
            options or range, or an architecture/backbone whose files are missing (the
            message names the file to place).
    """
    arch = ARCHITECTURES.get(architecture)
    if arch is None:
        valid = list(ARCHITECTURES)
        raise Unprocessable(
            f"unknown architecture {architecture!r}; valid: {', '.join(valid)}",
            details={"received": architecture, "valid": valid},
        )
    given = dict(parameters or {})
    spec = parameters_for(arch, model_home)
    unknown = sorted(set(given) - set(spec))
    if unknown:
        valid = sorted(spec)
        raise Unprocessable(
            f"{arch.name}: unknown parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; valid: {', '.join(valid)}",
            details={"received": unknown, "valid": valid},
        )
    out: dict[str, Any] = {}
    for name, param in spec.items():
        if name == "backbone":  # options depend on pre_trained: checked below
            param = Param(param.type, param.default, param.description)
        if name in given:
            out[name] = _check_type(arch, name, param, given[name])
        else:
            out[name] = list(param.default) if param.type == "array" else param.default

    if "backbone" in out:
        backbone = out["backbone"]
        pretrained = out.get("pre_trained", True) or arch.needs_pretrained
        options = spec["backbone"].options or ()
        known = arch.backbone_choices or tuple(_KNOWN_FEATURES)
        if backbone not in options and backbone not in known:
            raise _invalid(
                f"{arch.name}: backbone {backbone!r} is not one of: {', '.join(options)}",
                "backbone",
                valid=list(options),
                received=backbone,
            )
        if pretrained:  # a known backbone without its file: name the file to place
            backbones.require(model_home, backbone)
        size = _FIXED_SIZE.get(backbone)
        if size is not None and out["image_size"] != size:
            raise _invalid(
                f"{arch.name}: backbone {backbone} needs image_size {size}",
                "image_size",
                valid=[size],
            )
        if arch.name != "fastflow":
            _check_layers(arch, out, given="layers" in given or "layer" in given)
    if arch.name == "efficientad":
        path = teacher_file(model_home, out["model_size"])
        if not path.is_file():
            raise Unprocessable(
                f"efficientad: the pretrained teacher is missing: place "
                f"pretrained_teacher_{out['model_size']}.pth (from anomalib's "
                f"efficientad_pretrained_weights.zip) at {path}",
                details={"missing_file": str(path)},
            )
    return out
