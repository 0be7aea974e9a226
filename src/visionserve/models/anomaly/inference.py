"""Anomaly inference on an exported OpenVINO model: numpy, cv2 and openvino only.

No torch and no anomalib, so a Serve replica starts in a fraction of a second and
small. The exported graph already holds anomalib's pre-processing (resize, normalise)
and post-processing (score normalisation, threshold at 0.5): input is RGB float 0..1
NCHW at a fixed size; outputs are ``pred_score``, ``pred_label``, ``anomaly_map`` and
``pred_mask``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import openvino as ov

from visionserve.errors import InvalidImage, NotFound

log = logging.getLogger(__name__)

METADATA_FILE = "visionserve.json"
_core_lock = threading.Lock()
_core: ov.Core | None = None


def _ov_core() -> ov.Core:
    global _core
    with _core_lock:
        if _core is None:
            _core = ov.Core()
        return _core


@dataclass(frozen=True)
class Prediction:
    """One image's result.

    ``score`` is normalised so that 0.5 is the threshold learnt at training;
    ``anomaly_map`` is float32 HxW at the original image size, on the same scale.
    """

    score: float
    is_anomalous: bool
    anomaly_map: np.ndarray


class AnomalyModel:
    """A compiled OpenVINO anomaly model; :meth:`predict` is safe from many threads."""

    def __init__(self, compiled: ov.CompiledModel, metadata: dict[str, Any] | None = None) -> None:
        self._compiled = compiled
        shape = compiled.input(0).get_partial_shape()
        if shape.is_dynamic or len(shape) != 4:
            raise ValueError(f"expected a static 1x3xHxW input, got {shape}")
        self.input_size: tuple[int, int] = (shape[2].get_length(), shape[3].get_length())
        self.metadata = metadata or {}
        self._outputs = {out.get_any_name(): out for out in compiled.outputs}
        if "anomaly_map" not in self._outputs or "pred_score" not in self._outputs:
            raise ValueError(f"not an anomalib export: outputs {sorted(self._outputs)}")
        # An infer request serves one call at a time: keep a pool, grown on demand.
        self._idle: queue.SimpleQueue[ov.InferRequest] = queue.SimpleQueue()

    @classmethod
    def load(
        cls, openvino_dir: Path, device: str = "CPU", *, threads: int | None = None
    ) -> AnomalyModel:
        """Compile ``<openvino_dir>/model.xml`` for ``device``.

        On CPU the precision hint is f32: OpenVINO would otherwise pick bf16 on CPUs
        that have it, which shifts scores near the threshold.

        Args:
            openvino_dir: The export directory (``model.xml``, ``model.bin``, optional
                ``visionserve.json``).
            device: An OpenVINO device name.
            threads: CPU inference threads; None lets OpenVINO use every core. Set it
                to the CPUs a Ray replica was given.

        Returns:
            The loaded model.

        Raises:
            NotFound: No ``model.xml`` in the directory.
        """
        folder = Path(openvino_dir)
        xml = folder / "model.xml"
        if not xml.is_file():
            raise NotFound(f"no OpenVINO model at {xml}")
        config: dict[str, Any] = {}
        if device.upper().startswith("CPU"):
            config["INFERENCE_PRECISION_HINT"] = "f32"
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
        compiled = _ov_core().compile_model(str(xml), device, config)
        meta_path = folder / METADATA_FILE
        metadata = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        log.info("loaded anomaly model %s on %s", folder, device)
        return cls(compiled, metadata)

    def _request(self) -> ov.InferRequest:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._compiled.create_infer_request()

    def predict(self, rgb: np.ndarray) -> Prediction:
        """Score one image.

        Args:
            rgb: HxWx3 uint8 RGB (HxW grey and HxWx4 RGBA are accepted too).

        Returns:
            The score, the label and the anomaly map at the image's size.

        Raises:
            InvalidImage: Not a 2D image array.
        """
        rgb = _as_rgb(rgb)
        h, w = rgb.shape[:2]
        ih, iw = self.input_size
        interp = cv2.INTER_AREA if h > ih or w > iw else cv2.INTER_LINEAR
        x = cv2.resize(rgb, (iw, ih), interpolation=interp).astype(np.float32) / 255.0
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        request = self._request()
        try:
            result = request.infer({0: x})
            score = float(np.asarray(result[self._outputs["pred_score"]]).reshape(-1)[0])
            amap = np.asarray(result[self._outputs["anomaly_map"]], np.float32)
            amap = amap.reshape(amap.shape[-2:]).copy()  # the request reuses its buffers
            label_out = self._outputs.get("pred_label")
            label = (
                bool(np.asarray(result[label_out]).reshape(-1)[0])
                if label_out is not None
                else score >= 0.5
            )
        finally:
            self._idle.put(request)
        if amap.shape != (h, w):
            amap = np.asarray(cv2.resize(amap, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)
        return Prediction(score=score, is_anomalous=label, anomaly_map=amap)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise InvalidImage("expected an HxWx3 RGB image array")
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[..., :3])
    if image.shape[2] != 3:
        raise InvalidImage(f"expected 3 colour channels, got {image.shape[2]}")
    return image


def _colour_map(pred: Prediction) -> np.ndarray:
    """JET colours (BGR uint8) of the anomaly map; 0.5 (the threshold) sits mid-scale."""
    scaled = np.clip(pred.anomaly_map, 0.0, 1.0) * 255.0
    return cv2.applyColorMap(scaled.astype(np.uint8), cv2.COLORMAP_JET)


def _blend_bgr(pred: Prediction, rgb: np.ndarray | None, alpha: float = 0.45) -> np.ndarray:
    heat = _colour_map(pred)
    if rgb is None:
        return heat
    bgr = cv2.cvtColor(_as_rgb(rgb), cv2.COLOR_RGB2BGR)
    if bgr.shape[:2] != heat.shape[:2]:
        heat = cv2.resize(heat, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(heat, alpha, bgr, 1.0 - alpha, 0.0)


def heatmap_png(pred: Prediction, rgb: np.ndarray | None = None) -> bytes:
    """The anomaly map as a JET-coloured PNG, blended over ``rgb`` when given.

    Args:
        pred: A prediction.
        rgb: The image it was made from (RGB uint8), or None for the bare map.

    Returns:
        PNG bytes at the image's size.
    """
    ok, buf = cv2.imencode(".png", _blend_bgr(pred, rgb))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def overlay(rgb: np.ndarray, pred: Prediction) -> np.ndarray:
    """An annotated frame for video streams: heatmap blend plus label and score.

    Args:
        rgb: The frame (RGB uint8).
        pred: Its prediction.

    Returns:
        RGB uint8 frame of the same size.
    """
    bgr = _blend_bgr(pred, rgb)
    text = f"{'ANOMALY' if pred.is_anomalous else 'OK'} {pred.score:.2f}"
    colour = (0, 0, 255) if pred.is_anomalous else (0, 200, 0)
    scale = max(0.4, bgr.shape[0] / 480)
    thick = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(2, round(4 * scale))
    cv2.rectangle(bgr, (0, 0), (tw + 2 * pad, th + base + 2 * pad), (0, 0, 0), -1)
    cv2.putText(
        bgr, text, (pad, th + pad), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA
    )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
