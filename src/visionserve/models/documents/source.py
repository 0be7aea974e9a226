"""Turn an uploaded document (PDF or image) into rendered :class:`Page` objects.

A PDF page is rendered with PyMuPDF at 150 DPI (300 with ``high_resolution``), or
at the highest lower DPI (down to 72) whose image fits the render pixel limit, and
keeps what the file itself knows: its text layer as :class:`TextSpan` objects and
its ruled tables as :class:`TableCells`, all in page-image pixels. An image file
(PNG, JPEG, WEBP, TIFF with every frame a page) becomes pages at its own size,
upright (EXIF orientation applied) and RGB.

The type is decided by magic bytes, never by the file name. Every problem with the
input is a 400-class :class:`~visionserve.errors.BadRequest` with a message a
client can act on; nothing a client sends may end in a 500.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
import pymupdf
from PIL import Image, ImageOps

from visionserve.errors import BadRequest, InvalidFormat, InvalidImage, VisionServeError
from visionserve.models.documents.types import BBox, Page, TableCells, TextSpan
from visionserve.platform.images import MIME_TYPES, open_image, sniff_format

log = logging.getLogger(__name__)

#: Render resolution of PDF pages, normal and ``high_resolution``.
DPI = 150
HIGH_RES_DPI = 300
#: Default pixel limit per page (the same default as ``settings.limits.max_image_pixels``).
DEFAULT_MAX_PIXELS = 64_000_000
#: Default pixel limit of a rendered PDF page (the same default as
#: ``settings.limits.max_output_pixels``): 32 MP of RGB is 96 MB, and an A2 page at 300 DPI.
DEFAULT_MAX_RENDER_PIXELS = 32_000_000
#: The lowest DPI a page too large for the render limit is brought down to; a page that
#: does not fit even there (a 200-inch MediaBox) is refused, like a decompression bomb.
MIN_DPI = 72
#: The kinds :func:`sniff_document` accepts.
DOCUMENT_KINDS = ("pdf", "png", "jpeg", "tiff", "webp")

_PILLOW_NAMES = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "webp": "WEBP"}
# Text flags for get_text("dict"): the defaults minus embedded image bytes, which
# would copy every picture on the page only to be thrown away.
_TEXT_FLAGS = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES
# Acrobat accepts a header anywhere in the first kilobyte (mail gateways and some
# generators prepend junk), so a PDF is recognised there too.
_PDF_HEADER_WINDOW = 1024
_BOLD_NAME = re.compile(r"bold|black|heavy|semibold|demi", re.IGNORECASE)
_A4_POINTS = (595.0, 842.0)


def sniff_document(data: bytes) -> str:
    """Identify a document by its magic bytes.

    Args:
        data: The file's bytes.

    Returns:
        ``"pdf"``, ``"png"``, ``"jpeg"``, ``"tiff"`` or ``"webp"``.

    Raises:
        BadRequest: The file is empty.
        InvalidFormat: Any other type; the message is the contract's
            ``"Unsupported file type"`` and ``details["received"]`` the MIME type found.
    """
    if not data:
        raise BadRequest("The file is empty", code="empty_file", details={"field": "file"})
    if b"%PDF-" in data[:_PDF_HEADER_WINDOW]:
        return "pdf"
    kind = sniff_format(data)
    if kind not in DOCUMENT_KINDS:
        raise InvalidFormat(
            "Unsupported file type",
            details={"received": MIME_TYPES.get(kind or "", "application/octet-stream")},
        )
    return kind


def count_pages(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """Count a document's pages without rendering any.

    Args:
        data: The file's bytes.
        max_pixels: Pixel limit for an image's first frame (checked from its header).

    Returns:
        The number of pages (frames for a TIFF, 1 for other images).

    Raises:
        BadRequest: Unsupported, empty, encrypted, corrupt or page-less input.
    """
    kind = sniff_document(data)
    if kind == "pdf":
        doc = _open_pdf(data)
        try:
            return int(doc.page_count)
        finally:
            doc.close()
    img = _open_image_file(data, kind, max_pixels)
    return _frame_count(img, kind)


def load_pages(
    data: bytes,
    *,
    file_name: str | None,
    high_resolution: bool,
    max_pages: int,
    page_numbers: list[int] | None = None,
    continue_on_error: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_render_pixels: int = DEFAULT_MAX_RENDER_PIXELS,
) -> list[Page]:
    """Render a document's pages; see :func:`iter_pages` for the arguments.

    Returns:
        The pages, in the order asked for.
    """
    return list(
        iter_pages(
            data,
            file_name=file_name,
            high_resolution=high_resolution,
            max_pages=max_pages,
            page_numbers=page_numbers,
            continue_on_error=continue_on_error,
            max_pixels=max_pixels,
            max_render_pixels=max_render_pixels,
        )
    )


def iter_pages(
    data: bytes,
    *,
    file_name: str | None,
    high_resolution: bool,
    max_pages: int,
    page_numbers: list[int] | None = None,
    continue_on_error: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_render_pixels: int = DEFAULT_MAX_RENDER_PIXELS,
) -> Iterator[Page]:
    """Render a document's pages one at a time (a 300 DPI A4 page is 26 MB).

    Every file-level check (type, encryption, corruption, page count, page
    numbers) runs before the first page is yielded, so a bad file fails fast.

    Args:
        data: The file's bytes; the type comes from its magic bytes.
        file_name: The client's name for the file, only for messages and logs.
        high_resolution: Render PDF pages at 300 DPI instead of 150.
        max_pages: The most pages a document may have.
        page_numbers: 1-based pages to load, in this order; all pages when None.
        continue_on_error: When a single page fails (rendering, decoding, size),
            yield it with ``error`` set and a blank white image instead of raising.
        max_pixels: The largest ``width * height`` of an image file's page.
        max_render_pixels: The largest ``width * height`` of a rendered PDF page
            (``settings.limits.max_output_pixels``): a larger page is rendered at a
            lower DPI (``Page.dpi`` says which), down to :data:`MIN_DPI`.

    Yields:
        One :class:`Page` per requested page.

    Raises:
        BadRequest: A bad file, too many pages, a page number out of range, or
            (without ``continue_on_error``) a page that cannot be rendered.
    """
    kind = sniff_document(data)
    dpi = HIGH_RES_DPI if high_resolution else DPI
    if kind == "pdf":
        doc = _open_pdf(data)
        try:
            numbers = _select(doc.page_count, max_pages, page_numbers)
            for number in numbers:
                yield _guarded(
                    partial(_render_pdf_page, doc, number, dpi, max_render_pixels),
                    number=number,
                    dpi=dpi,
                    size=_pdf_page_size(doc, number, dpi),
                    continue_on_error=continue_on_error,
                    file_name=file_name,
                    max_pixels=max_render_pixels,
                )
        finally:
            doc.close()
        return

    img = _open_image_file(data, kind, max_pixels)
    numbers = _select(_frame_count(img, kind), max_pages, page_numbers)
    for number in numbers:
        yield _guarded(
            partial(_image_frame, img, number, dpi, max_pixels),
            number=number,
            dpi=dpi,
            size=_a4(dpi),
            continue_on_error=continue_on_error,
            file_name=file_name,
            max_pixels=max_pixels,
        )


# --- PDF ---------------------------------------------------------------------------


def text_pages(
    data: bytes, *, high_resolution: bool, max_render_pixels: int = DEFAULT_MAX_RENDER_PIXELS
) -> list[Page]:
    """Every page's text layer without rendering pixels: what ``document_style`` reads.

    The page image is a zero-stride placeholder of the right size (no memory), so
    positions and sizes agree with the rendered pages (each at the DPI it renders at).
    """
    if sniff_document(data) != "pdf":
        return []
    dpi = HIGH_RES_DPI if high_resolution else DPI
    blank = np.zeros((1, 1, 3), np.uint8)
    pages = []
    doc = _open_pdf(data)
    try:
        for number in range(1, doc.page_count + 1):
            page = doc[number - 1]
            rect = page.rect
            page_dpi = render_dpi(rect.width, rect.height, dpi, max_render_pixels) or dpi
            width, height = _pixel_size(rect.width, rect.height, page_dpi)
            scale = pymupdf.Matrix(width / rect.width, height / rect.height)
            spans = _text_spans(page, page.rotation_matrix * scale, page_dpi / 72) or None
            image = np.broadcast_to(blank, (height, width, 3))
            pages.append(Page(number=number, image=image, dpi=page_dpi, spans=spans))
    finally:
        doc.close()
    return pages


def _open_pdf(data: bytes) -> pymupdf.Document:
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # MuPDF raises several types for hostile bytes
        raise BadRequest(
            "Invalid PDF: the file cannot be opened",
            code="invalid_pdf",
            details={"reason": str(exc)},
        ) from None
    try:
        # PyMuPDF already tries the empty user password; an owner password alone
        # (print/copy restrictions) does not stop us reading the file.
        if doc.needs_pass and not doc.authenticate(""):
            raise BadRequest("Encrypted PDFs are not supported", code="encrypted_pdf")
        if doc.is_repaired and b"%%EOF" not in data[-2048:]:
            # MuPDF rebuilds a truncated file from whatever objects survive and
            # would silently render half a document; a client should resend it.
            raise BadRequest("Invalid PDF: the file is truncated or corrupt", code="invalid_pdf")
        if doc.page_count == 0:
            raise BadRequest("Invalid PDF: the document has no pages", code="invalid_pdf")
    except BaseException:
        doc.close()
        raise
    return doc


def _pdf_page_size(doc: pymupdf.Document, number: int, dpi: int) -> tuple[int, int]:
    try:
        rect = doc[number - 1].rect
        return _pixel_size(rect.width, rect.height, dpi)
    except Exception:
        return _a4(dpi)


def render_dpi(width_pt: float, height_pt: float, dpi: int, max_pixels: int) -> int | None:
    """The DPI to render a page of this size at, checked before any pixel is made.

    Args:
        width_pt: Page width in points (1/72 inch).
        height_pt: Page height in points.
        dpi: The DPI asked for.
        max_pixels: The largest ``width * height`` of the rendered image.

    Returns:
        ``dpi`` when the page fits at it, else the highest lower DPI at which it fits,
        or None when it does not fit even at :data:`MIN_DPI`.
    """
    width, height = _pixel_size(width_pt, height_pt, dpi)
    if width * height <= max_pixels:
        return dpi
    # Pixels grow with the square of the DPI; step down from just above the estimate,
    # since each side is rounded.
    fit = min(dpi - 1, int(dpi * (max_pixels / (width * height)) ** 0.5) + 1)
    while fit >= MIN_DPI:
        width, height = _pixel_size(width_pt, height_pt, fit)
        if width * height <= max_pixels:
            return fit
        fit -= 1
    return None


def _pixel_size(width_pt: float, height_pt: float, dpi: int) -> tuple[int, int]:
    return max(1, round(width_pt * dpi / 72)), max(1, round(height_pt * dpi / 72))


def _render_pdf_page(doc: pymupdf.Document, number: int, dpi: int, max_pixels: int) -> Page:
    page = doc[number - 1]
    rect = page.rect  # the visible page, rotation applied
    fit = render_dpi(rect.width, rect.height, dpi, max_pixels)
    if fit is None:
        # A 200-inch MediaBox is a render bomb just like a 50000x50000 PNG.
        width, height = _pixel_size(rect.width, rect.height, dpi)
        low_w, low_h = _pixel_size(rect.width, rect.height, MIN_DPI)
        raise BadRequest(
            f"Page {number} is {width}x{height} pixels at {dpi} DPI ({low_w}x{low_h} at "
            f"{MIN_DPI} DPI); the limit is {max_pixels} pixels",
            code="page_too_large",
            details={"page": number, "width": width, "height": height, "max_pixels": max_pixels},
        )
    if fit != dpi:
        log.info(
            "page %d rendered at %d DPI, not %d: %d pixels at most", number, fit, dpi, max_pixels
        )
        dpi = fit
    # Scale to exactly round(size * dpi / 72) pixels: MuPDF rounds outwards, which
    # makes an A4 page 1241x1754 at 150 DPI instead of the expected 1240x1754.
    width, height = _pixel_size(rect.width, rect.height, dpi)
    scale = pymupdf.Matrix(width / rect.width, height / rect.height)
    pix = page.get_pixmap(matrix=scale, alpha=False, colorspace=pymupdf.csRGB)
    image = (
        np.frombuffer(pix.samples_mv, dtype=np.uint8)
        .reshape(pix.height, pix.stride)[:, : pix.width * 3]
        .reshape(pix.height, pix.width, 3)
        .copy()
    )
    # Text coordinates are in the unrotated page; the pixmap shows the rotated one.
    to_pixels = page.rotation_matrix * scale
    return Page(
        number=number,
        image=image,
        dpi=dpi,
        spans=_text_spans(page, to_pixels, dpi / 72) or None,
        tables=_tables(page, scale, number),
    )


def _text_spans(page: pymupdf.Page, to_pixels: pymupdf.Matrix, scale: float) -> list[TextSpan]:
    spans: list[TextSpan] = []
    for block in page.get_text("dict", flags=_TEXT_FLAGS)["blocks"]:
        for line_no, line in enumerate(block.get("lines", ())):
            for span in line["spans"]:
                if not span["text"].strip():
                    continue
                spans.append(
                    TextSpan(
                        bbox=_to_bbox(span["bbox"], to_pixels),
                        text=span["text"],
                        font_size=float(span["size"]) * scale,
                        # Subset fonts often lack the descriptor's bold flag but keep
                        # the weight in their name (ABCDEF+Arial-BoldMT).
                        bold=bool(span["flags"] & pymupdf.TEXT_FONT_BOLD)
                        or bool(_BOLD_NAME.search(span.get("font", ""))),
                        block=int(block["number"]),
                        line=line_no,
                    )
                )
    return spans


def _tables(page: pymupdf.Page, scale: pymupdf.Matrix, number: int) -> list[TableCells]:
    try:
        # use_layout=False: PyMuPDF 2's layout gate replaces a ruled grid whose box
        # differs from the layout model's text box (IoU < 0.6) by a guessed grid,
        # and costs ~0.6 s per page; the plain line finder is exact on ruled tables.
        found = page.find_tables(use_layout=False)
    except Exception:
        # Tables are extra information on top of the text layer; a table-finder
        # failure must not cost the page.
        log.warning("table detection failed on page %d", number, exc_info=True)
        return []
    # The finder works on the page as displayed (rotation applied), while the text
    # layer is addressed in unrotated coordinates.
    derotate = page.derotation_matrix
    lines = _char_lines(page) if found.tables else []
    tables = []
    for table in found.tables:
        # Table.extract() garbles punctuation ("$4 50\n."); reading each cell's
        # rectangle from the text layer does not.
        rows = [
            [_text_in(lines, pymupdf.Rect(cell) * derotate) if cell else "" for cell in row.cells]
            for row in table.rows
        ]
        if any(any(cell for cell in row) for row in rows):
            tables.append(TableCells(bbox=_to_bbox(table.bbox, scale), rows=rows))
    return tables


_Box = tuple[float, float, float, float]


def _char_lines(page: pymupdf.Page) -> list[tuple[_Box, list[tuple[_Box, str]]]]:
    """The text layer's lines, each with its box and its characters' boxes, read once.

    ``page.get_textbox`` walks every character of the page for each rectangle it is
    asked about: 46 of the 58 ms a page of the 50-page report took to render.
    """
    lines = []
    for block in page.get_textpage().extractRAWDICT()["blocks"]:
        for line in block.get("lines", ()):
            chars = [(ch["bbox"], ch["c"]) for span in line["spans"] for ch in span["chars"]]
            if chars:
                lines.append((line["bbox"], chars))
    return lines


def _text_in(lines: list[tuple[_Box, list[tuple[_Box, str]]]], rect: pymupdf.Rect) -> str:
    """The characters overlapping ``rect``, a line break between lines, as
    ``page.get_textbox(rect)`` reads them; runs of whitespace become one space."""

    def overlaps(box: _Box) -> bool:
        x0, y0, x1, y1 = box
        return not (rect.x0 >= x1 or rect.y0 >= y1 or rect.x1 <= x0 or rect.y1 <= y0)

    text = [
        "".join(c for box, c in chars if overlaps(box))
        for line_box, chars in lines
        if overlaps(line_box)
    ]
    return " ".join("\n".join(text).split())


def _to_bbox(rect: Any, matrix: pymupdf.Matrix) -> BBox:
    r = pymupdf.Rect(rect) * matrix  # Rect * Matrix is the bounding box of the image
    return BBox.from_corners(r.x0, r.y0, r.x1, r.y1)


# --- images ------------------------------------------------------------------------


def _open_image_file(data: bytes, kind: str, max_pixels: int) -> Image.Image:
    # A TIFF's frames are decoded one per page (_image_frame), not its first one
    # for every page besides; a single picture is decoded here and fails fast.
    return open_image(
        data, allowed={_PILLOW_NAMES[kind]}, max_pixels=max_pixels, load=kind != "tiff"
    )


def _frame_count(img: Image.Image, kind: str) -> int:
    if kind != "tiff":
        return 1  # an animated PNG or WEBP is one picture: its first frame
    try:
        return max(1, int(getattr(img, "n_frames", 1)))
    except Exception as exc:  # a broken IFD chain in a TIFF
        raise InvalidImage(f"corrupt image: {exc}", details={"field": "file"}) from None


def _image_frame(img: Image.Image, number: int, default_dpi: int, max_pixels: int) -> Page:
    if number > 1 or getattr(img, "n_frames", 1) > 1:
        img.seek(number - 1)
        width, height = img.size
        if width * height > max_pixels:
            raise InvalidImage(
                f"Page {number} is {width}x{height} pixels; the limit is {max_pixels} pixels",
                details={"page": number, "width": width, "height": height},
            )
    img.load()
    frame = ImageOps.exif_transpose(img) or img
    return Page(number=number, image=_to_rgb(frame), dpi=_image_dpi(img, default_dpi))


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit and float scans: scale to 8 bits rather than let convert() clip
        # everything above 255 to white.
        values = np.asarray(img, dtype=np.float64)
        top = float(values.max()) or 1.0
        img = Image.fromarray((values * (255.0 / top)).clip(0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA", "P") or "transparency" in img.info:
        # Transparent areas become white paper, not black (black text on a
        # transparent PNG would vanish on black).
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        img = flat
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def _image_dpi(img: Image.Image, default: int) -> int:
    dpi = img.info.get("dpi")
    try:
        value = round(float(dpi[0])) if dpi else 0
    except (TypeError, ValueError, IndexError):
        value = 0
    # Many files carry 1 or 72 "DPI" that says nothing about the scan.
    return value if 96 <= value <= 2400 else default


# --- shared ------------------------------------------------------------------------


def _select(total: int, max_pages: int, page_numbers: list[int] | None) -> list[int]:
    if total > max_pages:
        raise BadRequest(
            f"Document has {total} pages; the limit is {max_pages}",
            code="too_many_pages",
            details={"pages": total, "max_pages": max_pages},
        )
    if page_numbers is None:
        return list(range(1, total + 1))
    bad = [n for n in page_numbers if not 1 <= n <= total]
    if bad:
        raise BadRequest(
            f"Page {bad[0]} does not exist; the document has {total} pages",
            code="page_out_of_range",
            details={"pages": total, "requested": bad},
        )
    return list(page_numbers)


def _guarded(
    render: Callable[[], Page],
    *,
    number: int,
    dpi: int,
    size: tuple[int, int],
    continue_on_error: bool,
    file_name: str | None,
    max_pixels: int,
) -> Page:
    try:
        return render()
    except VisionServeError as exc:
        error: VisionServeError = exc
    except Exception as exc:  # MuPDF / Pillow errors on a damaged page
        error = BadRequest(
            f"Page {number} could not be rendered: {exc}",
            code="page_failed",
            details={"page": number},
        )
    log.warning("page %d of %s failed: %s", number, file_name or "(unnamed)", error.message)
    if not continue_on_error:
        raise error
    width, height = size
    if width * height > max_pixels:  # the page failed for its size: stand in with A4
        width, height = _a4(dpi)
    return Page(
        number=number,
        image=np.full((height, width, 3), 255, dtype=np.uint8),
        dpi=dpi,
        error=error.message,
    )


def _a4(dpi: int) -> tuple[int, int]:
    return round(_A4_POINTS[0] * dpi / 72), round(_A4_POINTS[1] * dpi / 72)
