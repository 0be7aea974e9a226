"""OCR engines behind one small protocol, and the contract's OCR strategies.

Two engines ship, both offline on CPU (see DESIGN.md, "Models and weights"):

* ``tesseract``: the Debian ``tesseract`` binary in a subprocess, word boxes.
  ``OMP_THREAD_LIMIT=1`` because its OpenMP threads make it five times slower
  on a busy machine, and parallelism comes from running pages side by side.
* ``rapidocr``: RapidOCR's default PP-OCR ONNX models, which ship in its wheel;
  it reports text lines, not words.

The default setting, ``auto``, runs tesseract where it is installed and rapidocr
elsewhere; :func:`resolve_ocr_engine` decides, and says which in one line.

:func:`ocr_page` applies the contract's ``ocr_strategy``: ``All`` OCRs every
page; ``Auto`` trusts a good PDF text layer and OCRs only what it lacks.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from visionserve.errors import UnknownModel, Unprocessable, VisionServeError
from visionserve.models.documents.types import BBox, Page, TextSpan, Word

log = logging.getLogger(__name__)

OcrStrategy = Literal["All", "Auto"]


class OcrUnavailable(VisionServeError):
    """An OCR engine that cannot run on this server (binary or model missing)."""

    code = "ocr_unavailable"
    status = 503


@runtime_checkable
class OcrEngine(Protocol):
    """What the document graph needs from an OCR engine."""

    name: str

    def recognize(self, image: np.ndarray) -> list[Word]:
        """Read the text of an image.

        Args:
            image: HxWx3 RGB (or HxW grey) uint8 pixels.

        Returns:
            Words (or lines, for engines that give lines) with boxes in image
            pixels and confidences in 0..1.
        """
        ...


class TesseractOcr:
    """Tesseract 5 through its command line: word boxes with confidences.

    Args:
        lang: Tesseract language(s), e.g. ``"eng"`` or ``"eng+deu"`` (see
            :func:`invoice_languages`).
        psm: Page segmentation mode (3: automatic, no orientation detection).
        timeout_s: Longest a page may take before it counts as failed.
        binary: The executable (found on ``PATH`` by default).
        remove_rules: Erase long ruled lines before OCR. Tesseract drops the text
            inside ruled table cells (each cell is a hole in the grid's outline,
            which it takes for a picture), so a ruled table reads as nothing.

    Raises:
        OcrUnavailable: The binary is not installed.
    """

    name = "tesseract"

    def __init__(
        self,
        lang: str = "eng",
        psm: int = 3,
        *,
        timeout_s: float = 120.0,
        binary: str = "tesseract",
        remove_rules: bool = True,
    ) -> None:
        path = shutil.which(binary)
        if path is None:
            raise OcrUnavailable(
                f"the {binary!r} binary was not found: install tesseract-ocr "
                f"(apt-get install tesseract-ocr tesseract-ocr-eng)"
            )
        self.binary = path
        self.lang = lang
        self.psm = psm
        self.timeout_s = timeout_s
        self.remove_rules = remove_rules
        # OpenMP inside tesseract fights with the pages run side by side.
        self._env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    def recognize(self, image: np.ndarray) -> list[Word]:
        """Read an image's words.

        Args:
            image: HxWx3 RGB (or HxW grey) uint8 pixels.

        Returns:
            One :class:`Word` per word tesseract found, in its reading order.

        Raises:
            OcrUnavailable: The language data is not installed.
            Unprocessable: Tesseract failed or ran past ``timeout_s``.
        """
        grey = _grey(image)
        if self.remove_rules:
            grey = erase_rules(grey)
        cmd = [self.binary, "stdin", "stdout", "--psm", str(self.psm), "-l", self.lang, "tsv"]
        try:
            proc = subprocess.run(
                cmd,
                input=_tiff_bytes(grey),
                capture_output=True,
                env=self._env,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise Unprocessable(
                f"OCR took longer than {self.timeout_s:.0f} s", code="ocr_failed"
            ) from None
        except OSError as exc:  # the binary went away after start-up
            raise OcrUnavailable(f"cannot run tesseract ({exc}): install tesseract-ocr") from None
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            if "Failed loading language" in stderr or "traineddata" in stderr:
                raise OcrUnavailable(
                    f"tesseract has no {self.lang!r} language data: install "
                    f"tesseract-ocr-{self.lang.split('+')[0]}"
                )
            raise Unprocessable(
                f"tesseract failed (exit {proc.returncode}): {stderr[-500:]}", code="ocr_failed"
            )
        return parse_tsv(proc.stdout.decode("utf-8", "replace"))


#: The languages of the invoices extract reads (``make tesseract`` installs them).
#: English alone drops their accents (Dörschner read as "Dérschner"); the six
#: together cost about 25% more time a page, and read a little more noise into
#: figures, so documents keeps English.
INVOICE_LANGUAGES = ("eng", "deu", "fra", "nld", "spa", "ita")


@functools.cache
def invoice_languages(binary: str = "tesseract") -> str:
    """``"eng+deu+..."``: those of :data:`INVOICE_LANGUAGES` tesseract has data for."""
    try:
        proc = subprocess.run(
            [binary, "--list-langs"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "eng"
    listed = {line.strip() for line in proc.stdout.decode("utf-8", "replace").splitlines()}
    return "+".join(lang for lang in INVOICE_LANGUAGES if lang in listed) or "eng"


def parse_tsv(tsv: str) -> list[Word]:
    """Parse tesseract's TSV output into words.

    Args:
        tsv: The output of ``tesseract ... tsv``.

    Returns:
        The word-level rows (level 5) with text, confidence scaled to 0..1.
    """
    words = []
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        # level, page, block, par, line, word, left, top, width, height, conf, text
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        left, top, width, height = (int(c) for c in cols[6:10])
        conf = float(cols[10])
        words.append(
            Word(
                BBox(float(left), float(top), float(width), float(height)),
                cols[11].strip(),
                min(1.0, max(0.0, conf / 100.0)),
            )
        )
    return words


class RapidOcr:
    """RapidOCR 3 with the PP-OCR models from its own wheel: line boxes and scores.

    The model files are passed by path, so RapidOCR never reaches its download
    code; a missing file is a start-up error.

    Args:
        threads: ONNX Runtime intra-op threads (None: ONNX Runtime's default).
        max_side_len: Images are shrunk so their longer side fits this before
            detection (RapidOCR's default is 2000; a 300 DPI A4 page is 3508).
        use_cls: Run the text-line orientation classifier. Off by default: it
            squeezes a line into 192 pixels, and on long lines of an upright page
            it wrongly flips some by 180°, which turns them into garbage.

    Raises:
        OcrUnavailable: rapidocr or one of its model files is missing.
    """

    name = "rapidocr"

    _MODELS = {
        "Det": "PP-OCRv6_det_small.onnx",
        "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        "Rec": "PP-OCRv6_rec_small.onnx",
    }

    def __init__(
        self, *, threads: int | None = None, max_side_len: int = 2000, use_cls: bool = False
    ) -> None:
        try:
            import rapidocr
        except ImportError as exc:
            raise OcrUnavailable(
                f"rapidocr is not importable ({exc}): install rapidocr==3.10.0 "
                "(never rapidocr-onnxruntime beside it)"
            ) from None
        models = Path(rapidocr.__file__).parent / "models"
        params: dict[str, Any] = {
            "Global.log_level": "warning",
            "Global.max_side_len": max_side_len,
            "Global.use_cls": use_cls,
        }
        for section, file in self._MODELS.items():
            path = models / file
            if not path.is_file():
                raise OcrUnavailable(
                    f"rapidocr model {path} is missing: reinstall rapidocr==3.10.0"
                )
            params[f"{section}.model_path"] = str(path)
        if threads is not None:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
            params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
        self._engine = rapidocr.RapidOCR(params=params)

    def recognize(self, image: np.ndarray) -> list[Word]:
        """Read an image's text lines.

        Args:
            image: HxWx3 RGB (or HxW grey) uint8 pixels.

        Returns:
            One :class:`Word` per text line, box in image pixels, score in 0..1.
        """
        if image.ndim == 3:
            image = np.ascontiguousarray(image[..., ::-1])  # RapidOCR takes arrays as BGR
        result: Any = self._engine(image)  # a RapidOCROutput, or another output when empty
        # Nothing found comes back as a different output type without these fields.
        boxes, txts, scores = (getattr(result, k, None) for k in ("boxes", "txts", "scores"))
        if boxes is None or txts is None or scores is None:
            return []
        words = []
        for box, text, score in zip(boxes, txts, scores, strict=True):
            points = np.asarray(box, dtype=np.float64).reshape(-1, 2)
            x0, y0 = points.min(axis=0)
            x1, y1 = points.max(axis=0)
            if text.strip():
                box = BBox.from_corners(float(x0), float(y0), float(x1), float(y1))
                words.append(Word(box, text.strip(), float(score)))
        return words


#: OCR engines by name; each value builds an engine (keyword arguments pass through).
OCR_ENGINES: dict[str, Callable[..., OcrEngine]] = {
    "tesseract": TesseractOcr,
    "rapidocr": RapidOcr,
}


#: The ``documents.ocr_engine`` setting that picks an engine by what is installed.
AUTO = "auto"
_SETTING = "VISIONSERVE_DOCUMENTS__OCR_ENGINE"
_INSTALL_TESSERACT = "apt-get install tesseract-ocr tesseract-ocr-eng"


def tesseract_problem(
    binary: str = "tesseract", lang: str = "eng", *, timeout_s: float = 10.0
) -> str | None:
    """Why Tesseract cannot read ``lang`` on this machine, or None when it can.

    Runs ``tesseract --list-langs`` once: the binary must be on ``PATH``, start,
    and list the language's traineddata.

    Args:
        binary: The executable to look for on ``PATH``.
        lang: The language whose data must be installed.
        timeout_s: Longest the probe may take.

    Returns:
        A short reason such as ``"tesseract not found"``, or None.
    """
    path = shutil.which(binary)
    if path is None:
        return f"{binary} not found"
    try:
        proc = subprocess.run(
            [path, "--list-langs"], capture_output=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{binary} does not run ({type(exc).__name__})"
    listed = (proc.stdout + proc.stderr).decode("utf-8", "replace").splitlines()
    if lang not in {line.strip() for line in listed}:
        return f"{binary} has no {lang!r} language data"
    return None


def resolve_ocr_engine(name: str, *, lang: str = "eng") -> tuple[str, str]:
    """The engine a ``documents.ocr_engine`` setting stands for here, and why.

    ``auto`` is tesseract when :func:`tesseract_problem` finds none, else rapidocr.
    An explicit ``tesseract`` is checked the same way, so that a server without it
    fails at start-up rather than on its first page.

    Args:
        name: ``"auto"`` or a key of :data:`OCR_ENGINES`.
        lang: The language tesseract must have data for.

    Returns:
        The engine's name in :data:`OCR_ENGINES`, and one line for the log that
        says which engine runs and how to get the other.

    Raises:
        UnknownModel: No engine has that name.
        OcrUnavailable: ``tesseract`` was asked for and cannot run here.
    """
    if name == AUTO:
        problem = tesseract_problem(lang=lang)
        if problem is None:
            return "tesseract", (
                f"OCR engine: tesseract (auto: tesseract is installed; "
                f"set {_SETTING}=rapidocr for RapidOCR)"
            )
        return "rapidocr", (
            f"OCR engine: rapidocr ({problem}; {_INSTALL_TESSERACT}, or set {_SETTING})"
        )
    if name not in OCR_ENGINES:
        raise UnknownModel(name, list(OCR_ENGINES))
    if name == "tesseract":
        problem = tesseract_problem(lang=lang)
        if problem is not None:
            raise OcrUnavailable(
                f"{_SETTING}=tesseract, but {problem}: {_INSTALL_TESSERACT}, "
                f"or set {_SETTING}=auto to fall back to RapidOCR"
            )
        return "tesseract", f"OCR engine: tesseract (set by {_SETTING}; rapidocr is the other)"
    return name, (
        f"OCR engine: {name} (set by {_SETTING}; {_SETTING}=tesseract needs {_INSTALL_TESSERACT})"
    )


def get_ocr_engine(name: str, **kwargs: Any) -> OcrEngine:
    """Build an OCR engine by its registry name, or by what is installed (``"auto"``).

    Args:
        name: A key of :data:`OCR_ENGINES`, or ``"auto"`` (see
            :func:`resolve_ocr_engine`).
        **kwargs: Passed to the engine's constructor.

    Returns:
        The engine.

    Raises:
        UnknownModel: No engine has that name.
        OcrUnavailable: The engine cannot run here.
    """
    if name == AUTO:
        name, _ = resolve_ocr_engine(name, lang=kwargs.get("lang", "eng"))
    try:
        factory = OCR_ENGINES[name]
    except KeyError:
        raise UnknownModel(name, list(OCR_ENGINES)) from None
    return factory(**kwargs)


# --- strategies ----------------------------------------------------------------------

#: Share of a text layer's characters that must be readable for Auto to trust it.
MIN_GOOD_TEXT = 0.9
# pdfminer-style "(cid:123)" placeholders, which some producers bake into the layer.
_CID = re.compile(r"\(cid:\d+\)")
# Ink blobs outside the text layer above this share of the page make Auto OCR it
# too: a short line of 20 pt text in a pasted picture is 0.04-0.07%, rules and
# frames up to 2 pt stay under 0.003%.
_FOREIGN_INK = 0.0002
# OCR words Auto adds to a text layer must look like text: figures and rules make
# tesseract emit low-confidence "|", "—" and the like.
_MIN_REGION_CONFIDENCE = 0.5


def ocr_page(page: Page, engine: OcrEngine, strategy: OcrStrategy | str = "All") -> Page:
    """Fill ``page.words`` as the contract's ``ocr_strategy`` asks.

    ``All`` OCRs the page image. ``Auto`` uses the PDF text layer when the page
    has a good one (mostly readable characters, no ``(cid:N)`` or U+FFFD glyph
    garbage) and OCRs otherwise; on a page with a good layer it still OCRs when
    the image has ink the layer does not explain (a scanned figure or a pasted
    screenshot), keeping only the OCR words outside the layer's text.

    Args:
        page: A rendered page.
        engine: The OCR engine.
        strategy: ``"All"`` or ``"Auto"``.

    Returns:
        A copy of the page with ``words`` set (the input is not modified). A page
        with ``error`` set is returned unchanged.

    Raises:
        ValueError: An unknown strategy.
    """
    if strategy not in ("All", "Auto"):
        raise ValueError(f"unknown ocr_strategy {strategy!r}; use 'All' or 'Auto'")
    if page.error:
        return page
    if strategy == "All" or not text_layer_ok(page):
        return replace(page, words=engine.recognize(page.image))
    words = spans_to_words(page.spans or [])
    if _foreign_ink(page) > _FOREIGN_INK:
        boxes = [s.bbox for s in page.spans or []]
        words += [
            w
            for w in engine.recognize(page.image)
            if w.confidence >= _MIN_REGION_CONFIDENCE
            and any(c.isalnum() for c in w.text)
            and not _covered(w.bbox, boxes)
        ]
    return replace(page, words=words)


def text_layer_ok(page: Page) -> bool:
    """Whether a page's PDF text layer is good enough to stand in for OCR.

    Args:
        page: A rendered page.

    Returns:
        True when the page has a text layer of which at least
        :data:`MIN_GOOD_TEXT` of the characters are readable.
    """
    if not page.has_text_layer:
        return False
    text = "".join(s.text for s in page.spans or [])
    cleaned = _CID.sub("", text)
    chars = [c for c in text if not c.isspace()]
    bad = len(text) - len(cleaned) + sum(1 for c in cleaned if not c.isspace() and _bad(c))
    return bool(chars) and bad <= (1 - MIN_GOOD_TEXT) * len(chars)


def spans_to_words(spans: list[TextSpan]) -> list[Word]:
    """Split text-layer spans into words.

    A span's box covers all its characters; each word gets the share of the
    width its characters take (exact for monospace, within a character or two
    for proportional fonts).

    Args:
        spans: Text-layer spans in page pixels.

    Returns:
        One :class:`Word` per whitespace-separated word, confidence 1.0.
    """
    words = []
    for span in spans:
        n = len(span.text)
        if n == 0:
            continue
        step = span.bbox.width / n
        for match in re.finditer(r"\S+", span.text):
            left = span.bbox.left + match.start() * step
            words.append(
                Word(
                    BBox(
                        left, span.bbox.top, (match.end() - match.start()) * step, span.bbox.height
                    ),
                    match.group(),
                    1.0,
                )
            )
    return words


def _bad(ch: str) -> bool:
    # U+FFFD is what MuPDF gives for glyphs without a Unicode mapping; control and
    # private-use characters come from fonts with custom encodings.
    return ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Co", "Cs", "Cn")


def _foreign_ink(page: Page) -> float:
    """Share of the page's grid cells inside ink blobs no span or table explains.

    The page is cut into cells of about 1/37 inch; a cell counts when it and its
    four neighbours all hold ink, which a paragraph or a picture does but a rule,
    a frame or specks of noise do not.
    """
    grid = max(2, round(page.dpi / 37.5))
    image = page.image
    # The darkest channel; numpy's min over a 3-wide last axis is 20x slower than this.
    grey = image if image.ndim == 2 else np.minimum.reduce([image[..., c] for c in range(3)])
    h, w = grey.shape[0] // grid, grey.shape[1] // grid
    if h < 3 or w < 3:
        return 0.0
    dark = grey[: h * grid, : w * grid] < 128
    ink = np.asarray(dark.reshape(h, grid, w, grid).any(axis=(1, 3)))
    blob = np.zeros_like(ink)
    blob[1:-1, 1:-1] = (
        ink[1:-1, 1:-1] & ink[:-2, 1:-1] & ink[2:, 1:-1] & ink[1:-1, :-2] & ink[1:-1, 2:]
    )
    pad = 1  # a cell of slack for anti-aliasing and descenders
    for box in [s.bbox for s in page.spans or []] + [t.bbox for t in page.tables]:
        x0, y0 = int(box.left // grid) - pad, int(box.top // grid) - pad
        x1, y1 = int(box.right // grid) + 1 + pad, int(box.bottom // grid) + 1 + pad
        blob[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = False
    return float(blob.mean())


def _covered(box: BBox, spans: list[BBox]) -> bool:
    area = box.area or 1.0
    return sum(box.intersection_area(s) for s in spans) >= 0.5 * area


def erase_rules(grey: np.ndarray, *, min_length: int | None = None) -> np.ndarray:
    """Whiten long horizontal and vertical lines (table rules, underlines, frames).

    Args:
        grey: HxW uint8 grey pixels.
        min_length: Shortest run of dark pixels that counts as a line; by default
            1/25 of the image width (1/3 inch on a Letter or A4 page), longer than
            any stroke of body text. Lines thicker than 1/12 of it are kept.

    Returns:
        A copy with the lines' pixels set to white.
    """
    h, w = grey.shape
    k = min_length or max(20, w // 25)
    # Find the lines on a 2x2 max-pooled mask: a quarter of the work, and the
    # upsampled mask also takes the lines' anti-aliased edges with them.
    dark = grey[: h // 2 * 2, : w // 2 * 2] < 128
    pooled = np.asarray(dark.reshape(h // 2, 2, w // 2, 2).any(axis=(1, 3)))
    half = max(2, k // 2)
    horizontal = _runs(pooled, half)
    vertical = _runs(pooled.T, half).T
    # Rules are thin; the stems and bars of large headings, and filled boxes, are
    # long too but thick: keep anything thicker than 1/12 of the minimum length
    # (2 points at any DPI for the default length).
    thick = max(2, half // 12) + 1
    horizontal &= ~_runs(horizontal.T, thick).T
    vertical &= ~_runs(vertical, thick)
    lines = horizontal | vertical
    # Grow the lines by a pooled pixel on every side: a scanned rule has a grey
    # halo that tesseract would still read as "|" once the dark core is gone.
    grown = lines.copy()
    grown[1:] |= lines[:-1]
    grown[:-1] |= lines[1:]
    grown[:, 1:] |= lines[:, :-1]
    grown[:, :-1] |= lines[:, 1:]
    mask = np.zeros((h, w), dtype=bool)
    mask[: h // 2 * 2, : w // 2 * 2] = grown.repeat(2, axis=0).repeat(2, axis=1)
    out = grey.copy()
    out[mask] = 255
    return out


def _runs(dark: np.ndarray, k: int) -> np.ndarray:
    """True where a pixel lies in a horizontal run of at least ``k`` dark pixels."""
    h, n = dark.shape
    if n < k:
        return np.zeros_like(dark)
    total = np.zeros((h, n + 1), np.int32)
    np.cumsum(dark, axis=1, dtype=np.int32, out=total[:, 1:])
    starts = (total[:, k:] - total[:, :-k]) == k  # a full run of k begins here
    # A pixel is covered when a run began within the k positions up to it.
    begun = np.zeros((h, n + k), np.int32)
    np.cumsum(starts, axis=1, dtype=np.int32, out=begun[:, k : n + 1])
    begun[:, n + 1 :] = begun[:, n : n + 1]
    return np.asarray((begun[:, k:] - begun[:, :-k]) > 0)


def _grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    # Tesseract binarises anyway; grey is a third of the pixels to encode and pipe.
    return np.asarray(Image.fromarray(image).convert("L"))


def _tiff_bytes(grey: np.ndarray) -> bytes:
    # Uncompressed TIFF: 4 ms for a 200 DPI A4 page where PNG took 90 ms, and tesseract
    # reads it as fast (PNM and BMP it reads 10-15% slower). Same words either way.
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, "TIFF")
    return buf.getvalue()
