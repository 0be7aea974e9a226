"""The models the edit runner loads in its own process: style transfer, the face
detector and an OCR engine. Each loads on first use, once per model home."""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path

from visionserve.models.documents.ocr import OcrEngine, get_ocr_engine
from visionserve.models.edit.ops.faces import FaceDetector
from visionserve.models.edit.ops.style import StyleTransfer


class LocalEngines:
    """Lazily loaded local models for one model home.

    Args:
        model_home: Directory holding centerface.onnx and the style ONNX files.
        ocr_engine: An OCR registry name. RapidOCR by default: its text detector finds
            captions and marks on photos that tesseract (made for pages) misses.
        threads: Intra-op threads for the ONNX models (None: all cores).
    """

    def __init__(
        self, model_home: Path, *, ocr_engine: str = "rapidocr", threads: int | None = None
    ) -> None:
        self.model_home = Path(model_home)
        self.ocr_engine = ocr_engine
        self.threads = threads
        self._lock = threading.Lock()
        self._style: StyleTransfer | None = None
        self._faces: FaceDetector | None = None
        self._ocr: OcrEngine | None = None

    def style(self) -> StyleTransfer:
        with self._lock:
            if self._style is None:
                self._style = StyleTransfer(self.model_home, threads=self.threads)
            return self._style

    def faces(self) -> FaceDetector:
        with self._lock:
            if self._faces is None:
                self._faces = FaceDetector(self.model_home, threads=self.threads)
            return self._faces

    def ocr(self) -> OcrEngine:
        with self._lock:
            if self._ocr is None:
                self._ocr = get_ocr_engine(self.ocr_engine)
            return self._ocr


@cache
def local_engines(model_home: Path) -> LocalEngines:
    """One :class:`LocalEngines` per model home in this process."""
    return LocalEngines(model_home)
