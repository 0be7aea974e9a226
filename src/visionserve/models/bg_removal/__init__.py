"""Local background removal through rembg's own session classes, one entry per model.

Weights come from the model home only: a session is created after checking that its
file is there (rembg then uses the file as is), so a missing file is a clear start-up
error and never a download.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visionserve.errors import UnknownModel
from visionserve.models.weights import weight_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalModel:
    """A rembg model: its session name, API id and display name."""

    name: str  # rembg's session name; deployments are called f"bg-{name}"
    model_id: str  # the contract's style: local_<short>
    title: str

    @property
    def file(self) -> str:
        """rembg looks for ``<name>.onnx`` in the model home (U2NET_HOME)."""
        return f"{self.name}.onnx"


# Every single-file rembg session; a model is usable once its file is in the model home.
LOCAL_MODELS: dict[str, LocalModel] = {
    m.name: m
    for m in (
        LocalModel("u2netp", "local_u2netp", "Local U2-Net-P"),
        LocalModel("u2net", "local_u2net", "Local U2-Net"),
        LocalModel("u2net_human_seg", "local_u2net_human", "Local U2-Net Human"),
        LocalModel("silueta", "local_silueta", "Local Silueta"),
        LocalModel("isnet-general-use", "local_isnet", "Local ISNet"),
        LocalModel("isnet-anime", "local_isnet_anime", "Local ISNet Anime"),
        LocalModel("birefnet-general", "local_birefnet", "Local BiRefNet General"),
        LocalModel("birefnet-general-lite", "local_birefnet_lite", "Local BiRefNet General Lite"),
        LocalModel("birefnet-portrait", "local_birefnet_portrait", "Local BiRefNet Portrait"),
        LocalModel("birefnet-dis", "local_birefnet_dis", "Local BiRefNet DIS"),
        LocalModel("birefnet-hrsod", "local_birefnet_hrsod", "Local BiRefNet HRSOD"),
        LocalModel("birefnet-cod", "local_birefnet_cod", "Local BiRefNet COD"),
        LocalModel("birefnet-massive", "local_birefnet_massive", "Local BiRefNet Massive"),
        LocalModel("bria-rmbg", "local_bria_rmbg", "Local BRIA RMBG 2.0"),
    )
}
BY_ID: dict[str, LocalModel] = {m.model_id: m for m in LOCAL_MODELS.values()}


def local_model(name_or_id: str) -> LocalModel:
    """Look a model up by rembg name (``u2netp``) or API id (``local_u2netp``)."""
    model = LOCAL_MODELS.get(name_or_id) or BY_ID.get(name_or_id)
    if model is None:
        raise UnknownModel(name_or_id, sorted(LOCAL_MODELS))
    return model


def available(model_home: Path) -> list[LocalModel]:
    """The models whose weight file is in the model home."""
    return [m for m in LOCAL_MODELS.values() if (Path(model_home) / m.file).is_file()]


_env_lock = threading.Lock()


class BackgroundRemover:
    """One rembg model, loaded once; :meth:`remove` gives an RGBA cut-out."""

    def __init__(self, name: str, model_home: Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort
        from rembg.sessions import sessions_class

        self.model = local_model(name)
        path = weight_path(model_home, self.model.file)  # clear error when missing
        session_cls = {cls.name(): cls for cls in sessions_class}[self.model.name]
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        from visionserve.models.runtime import onnx_providers

        with _env_lock:
            # rembg resolves <U2NET_HOME>/<file> and uses it without download or checksum.
            previous = os.environ.get("U2NET_HOME")
            os.environ["U2NET_HOME"] = str(path.parent)
            try:
                self.session = session_cls(self.model.name, options, providers=onnx_providers())
            finally:
                if previous is None:
                    os.environ.pop("U2NET_HOME", None)
                else:
                    os.environ["U2NET_HOME"] = previous
        self.warm()

    def warm(self) -> None:
        """One inference at start so the first request does not pay for graph setup."""
        started = time.perf_counter()
        self.mask(Image.new("RGB", (64, 64), (128, 128, 128)))
        log.info("%s warmed in %.0f ms", self.model.name, (time.perf_counter() - started) * 1000)

    def mask(self, img: Image.Image) -> Image.Image:
        """The foreground mask (L, same size as ``img``)."""
        (mask, *_) = self.session.predict(img.convert("RGB"))
        return mask

    def remove(self, img: Image.Image) -> Image.Image:
        """``img`` with its background made transparent (RGBA, same size)."""
        mask = self.mask(img)
        rgba = img.convert("RGBA")
        if img.mode in ("RGBA", "LA") or "transparency" in img.info:
            # Keep what was already transparent transparent.
            alpha = np.minimum(np.asarray(rgba.getchannel("A")), np.asarray(mask))
            mask = Image.fromarray(alpha, mode="L")
        rgba.putalpha(mask)
        return rgba

    def remove_batch(self, images: list[Image.Image]) -> list[Image.Image]:
        return [self.remove(img) for img in images]

    def describe(self) -> dict[str, Any]:
        return {"model_id": self.model.model_id, "name": self.model.name, "title": self.model.title}
