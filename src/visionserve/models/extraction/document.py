"""Uploaded documents as pages of words with boxes, for the extraction engine.

The files are read by the documents surface's loader (``models.documents.source``:
magic-byte sniffing, safe image decoding, PDF rendering limits), and a PDF page's
own text layer stands in for OCR when it is good (``models.documents.ocr``). A page
without usable text keeps its image and no words; :func:`ocr_pages` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from visionserve.errors import BadRequest, InvalidImage
from visionserve.models.documents import source
from visionserve.models.documents.ocr import OcrEngine, spans_to_words, text_layer_ok
from visionserve.models.documents.types import TableCells, Word

# The loader's codes for files that cannot be read at all; the extract contract calls
# every one of them ``invalid_image``. Encrypted PDFs and too many pages keep their
# own codes (``encrypted_pdf``, ``too_many_pages``): the client can act on those.
_UNREADABLE = frozenset(
    {
        "empty_file",
        "invalid_format",
        "invalid_pdf",
        "invalid_image",
        "page_failed",
        "page_too_large",
    }
)


@dataclass
class DocPage:
    """One page: its words (text layer or OCR) in page pixels, and its image.

    Attributes:
        number: 1-based page number.
        width: Page width in pixels (of ``image``, at ``dpi``).
        height: Page height in pixels.
        words: Words (or OCR lines) with boxes; empty until OCR for a page with no
            good text layer.
        image: RGB pixels, or None when the page is known only by its words.
        dpi: Resolution of the pixel coordinates.
        tables: Ruled tables the PDF's table finder saw (digital PDFs only).
        from_text_layer: Whether ``words`` came from the PDF's text layer.
    """

    number: int
    width: float
    height: float
    words: list[Word]
    image: np.ndarray | None = None
    dpi: int = source.DPI
    tables: list[TableCells] = field(default_factory=list)
    from_text_layer: bool = False


def load_pages(
    data: bytes,
    *,
    max_pages: int,
    dpi: int = source.DPI,
    max_pixels: int = source.DEFAULT_MAX_PIXELS,
    max_render_pixels: int = source.DEFAULT_MAX_RENDER_PIXELS,
) -> list[DocPage]:
    """Read a JPG, PNG, WEBP, TIFF or PDF into pages.

    Args:
        data: The file's bytes (the type comes from its magic bytes).
        max_pages: The most pages a document may have.
        dpi: PDF render resolution: 150 (the loader's normal) or, for anything
            above 150, 300 (its high resolution).
        max_pixels: The largest ``width * height`` of an image file's page.
        max_render_pixels: The largest rendered PDF page.

    Returns:
        One page per page (TIFF frame); PDF pages with a good text layer have words.

    Raises:
        InvalidImage: Empty, unsupported, corrupt, truncated or oversized input,
            or a PDF with no pages (code ``invalid_image``).
        BadRequest: A password-protected PDF (``encrypted_pdf``) or more pages than
            ``max_pages`` (``too_many_pages``).
    """
    try:
        pages = source.load_pages(
            data,
            file_name=None,
            high_resolution=dpi > source.DPI,
            max_pages=max_pages,
            max_pixels=max_pixels,
            max_render_pixels=max_render_pixels,
        )
    except BadRequest as exc:
        if exc.code in _UNREADABLE:
            raise InvalidImage(
                f"The file cannot be read as a document: {exc.message}",
                details={"reason": exc.code},
            ) from None
        raise
    out = []
    for page in pages:
        good = text_layer_ok(page)
        out.append(
            DocPage(
                number=page.number,
                width=float(page.width),
                height=float(page.height),
                words=spans_to_words(page.spans or []) if good else [],
                image=page.image,
                dpi=page.dpi,
                tables=page.tables if good else [],
                from_text_layer=good,
            )
        )
    return out


def ocr_pages(pages: list[DocPage], engine: OcrEngine, *, deskew: bool = True) -> list[DocPage]:
    """Fill the words of pages that have none by OCR.

    A scan is usually a degree or two off level, which is enough to put a label and
    its value on different lines; such a page is straightened first (its ``image``
    is then the straightened one, which the word boxes refer to).

    Args:
        pages: Pages from :func:`load_pages`.
        engine: An OCR engine (``models.documents.ocr``): tesseract gives words,
            RapidOCR lines; the extractor takes either.
        deskew: Straighten skewed scans before OCR.

    Returns:
        The pages, OCR'd where they had no words (the inputs are not modified).
    """
    out = []
    for page in pages:
        if page.words or page.image is None:
            out.append(page)
            continue
        image = straighten(page.image) if deskew else page.image
        out.append(replace(page, image=image, words=engine.recognize(image)))
    return out


#: Skews below this many degrees are left alone (OCR and line grouping cope).
MIN_SKEW = 0.15
MAX_SKEW = 5.0


def skew_angle(image: np.ndarray) -> float:
    """The angle (degrees, counter-clockwise positive) that levels a page's text lines.

    Text rows make the horizontal ink profile spiky when level; the angle that
    maximises the profile's variance on a downscaled page wins (coarse, then fine).
    """
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    scale = 800 / max(grey.shape)
    small = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ink = (small < 160).astype(np.float32)
    if ink.mean() < 0.002:
        return 0.0
    h, w = ink.shape
    centre = (w / 2, h / 2)

    def spread(angle: float) -> float:
        matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
        rotated = cv2.warpAffine(ink, matrix, (w, h), flags=cv2.INTER_NEAREST)
        return float(np.var(rotated.sum(axis=1)))

    coarse = max(np.arange(-MAX_SKEW, MAX_SKEW + 0.01, 0.5), key=spread)
    fine = max(np.arange(coarse - 0.5, coarse + 0.51, 0.1), key=spread)
    return round(float(fine), 2)


def straighten(image: np.ndarray) -> np.ndarray:
    """The page rotated level (white fill), or the page itself when it is level."""
    angle = skew_angle(image)
    if abs(angle) < MIN_SKEW:
        return image
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    fill = (255, 255, 255) if image.ndim == 3 else 255
    return np.asarray(
        cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=fill)
    )
