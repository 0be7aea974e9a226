"""Uploaded documents as pages of words with boxes, for the extraction engine.

The files are read by the documents surface's loader (``models.documents.source``:
magic-byte sniffing, safe image decoding, PDF rendering limits), and a PDF page's
own text layer stands in for OCR when it is good (``models.documents.ocr``). A page
without usable text keeps its image and no words; :func:`ocr_pages` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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


def ocr_pages(pages: list[DocPage], engine: OcrEngine) -> list[DocPage]:
    """Fill the words of pages that have none by OCR.

    Args:
        pages: Pages from :func:`load_pages`.
        engine: An OCR engine (``models.documents.ocr``): tesseract gives words,
            RapidOCR lines; the extractor takes either.

    Returns:
        The pages, OCR'd where they had no words (the inputs are not modified).
    """
    return [
        replace(page, words=engine.recognize(page.image))
        if not page.words and page.image is not None
        else page
        for page in pages
    ]
