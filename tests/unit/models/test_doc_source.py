"""Document sources: PDF rendering, text layer, ruled tables, images, hostile input.

Every document is generated here: a PyMuPDF-written report page (header, heading,
paragraphs, a ruled table, footer), TIFF/PNG/JPEG/WEBP images and broken files.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pymupdf
import pytest
from PIL import Image

from visionserve.errors import BadRequest, InvalidFormat, InvalidImage
from visionserve.models.documents.source import (
    count_pages,
    iter_pages,
    load_pages,
    sniff_document,
)
from visionserve.models.documents.types import BBox, Page

# ISO A4, 210 x 297 mm (PyMuPDF's paper_rect("a4") rounds it to 595 x 842 points).
A4 = pymupdf.Rect(0, 0, 210 / 25.4 * 72, 297 / 25.4 * 72)
HEADER = "ACME Corporation - Quarterly Report"
HEADING = "Annual Report 2024"
PARAGRAPHS = [
    "The quick brown fox jumps over the lazy dog. Revenue grew by 12% to $4.5 million, "
    "while operating costs fell slightly in the second half of the year.",
    "Our three factories shipped 18,250 units in total; the new plant in Leeds opened "
    "in March and reached full capacity by the end of September.",
]
TABLE = [
    ["Item", "Qty", "Price"],
    ["Widget, large", "3", "$4.50"],
    ["Gadget (blue)", "10", "$0.99"],
    ["Sprocket #7", "125", "$12.00"],
]
FOOTER = "Confidential - page 1 of 1"
# Table geometry in points: origin, column width, row height.
TABLE_X, TABLE_Y, COL_W, ROW_H = 72.0, 330.0, 150.0, 24.0
MAX_PAGES = 50


def report_page(doc: pymupdf.Document, *, rotation: int = 0) -> pymupdf.Page:
    """Add the report page to ``doc``: header, heading, paragraphs, ruled table, footer."""
    page = doc.new_page(width=A4.width, height=A4.height)
    page.insert_text((72, 40), HEADER, fontsize=8, fontname="helv")
    page.insert_text((72, 110), HEADING, fontsize=24, fontname="hebo")
    y = 140.0
    for text in PARAGRAPHS:
        rect = pymupdf.Rect(72, y, A4.width - 72, y + 80)
        left = page.insert_textbox(rect, text, fontsize=11, fontname="helv")
        assert left >= 0, "paragraph does not fit its box"
        y += 80 - left + 12
    shape = page.new_shape()
    for i in range(len(TABLE) + 1):
        shape.draw_line((TABLE_X, TABLE_Y + i * ROW_H), (TABLE_X + 3 * COL_W, TABLE_Y + i * ROW_H))
    for j in range(4):
        x = TABLE_X + j * COL_W
        shape.draw_line((x, TABLE_Y), (x, TABLE_Y + len(TABLE) * ROW_H))
    shape.finish(color=(0, 0, 0), width=1)
    shape.commit()
    for i, row in enumerate(TABLE):
        for j, cell in enumerate(row):
            origin = (TABLE_X + j * COL_W + 6, TABLE_Y + i * ROW_H + 16)
            page.insert_text(origin, cell, fontsize=11, fontname="hebo" if i == 0 else "helv")
    page.insert_text((72, A4.height - 30), FOOTER, fontsize=8, fontname="helv")
    if rotation:
        page.set_rotation(rotation)
    return page


def report_pdf(pages: int = 1, **kwargs: object) -> bytes:
    doc = pymupdf.open()
    for _ in range(pages):
        report_page(doc, **kwargs)  # type: ignore[arg-type]
    return doc.tobytes()


def report_lines() -> list[str]:
    """The report's text in reading order, one entry per line (paragraphs whole)."""
    return [HEADER, HEADING, *PARAGRAPHS, *(" ".join(row) for row in TABLE), FOOTER]


def load_one(data: bytes, **kwargs: object) -> Page:
    options: dict[str, object] = {"file_name": None, "high_resolution": False}
    options.update(kwargs)
    (page,) = load_pages(data, max_pages=MAX_PAGES, **options)  # type: ignore[arg-type]
    return page


def ink_box(image: np.ndarray, box: BBox | None = None) -> BBox:
    """The bounding box of the dark pixels (of the whole image or inside ``box``)."""
    grey = image.min(axis=2)
    if box is not None:
        x0, y0 = int(box.left), int(box.top)
        grey = grey[y0 : int(np.ceil(box.bottom)), x0 : int(np.ceil(box.right))]
    else:
        x0 = y0 = 0
    ys, xs = np.nonzero(grey < 128)
    assert len(xs), "no ink"
    return BBox.from_corners(x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1)


def encoded(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


# --- sniffing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"%PDF-1.7\n...", "pdf"),
        (b"\x00\x01junk before the header %PDF-1.4\n...", "pdf"),
        (b"\x89PNG\r\n\x1a\n....", "png"),
        (b"\xff\xd8\xff\xe0....", "jpeg"),
        (b"II*\x00....", "tiff"),
        (b"MM\x00*....", "tiff"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
    ],
)
def test_sniff_by_magic_bytes(data: bytes, kind: str) -> None:
    assert sniff_document(data) == kind


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (bytes(range(256)) * 4, "application/octet-stream"),
        (b"GIF89a" + b"\x00" * 20, "image/gif"),
        (b"just some text, not a document", "text/plain"),
        (b"PK\x03\x04" + b"\x00" * 40, "application/octet-stream"),  # a .docx
    ],
)
def test_unsupported_types(data: bytes, mime: str) -> None:
    with pytest.raises(InvalidFormat) as exc:
        sniff_document(data)
    assert exc.value.message == "Unsupported file type"
    assert exc.value.status == 400
    assert exc.value.details["received"] == mime


def test_random_bytes_are_unsupported() -> None:
    data = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(InvalidFormat, match=r"^Unsupported file type$"):
        load_pages(data, file_name="scan.pdf", high_resolution=False, max_pages=MAX_PAGES)


def test_empty_file() -> None:
    for call in (sniff_document, count_pages):
        with pytest.raises(BadRequest, match="empty") as exc:
            call(b"")
        assert exc.value.status == 400
    with pytest.raises(BadRequest, match="empty"):
        load_pages(b"", file_name=None, high_resolution=False, max_pages=MAX_PAGES)


# --- PDF: text layer, tables, resolution -----------------------------------------------


@pytest.fixture(scope="module")
def report() -> bytes:
    return report_pdf()


@pytest.fixture(scope="module")
def report_150(report: bytes) -> Page:
    return load_one(report)


def test_a4_page_sizes(report: bytes) -> None:
    page = load_one(report)
    assert (page.width, page.height, page.dpi) == (1240, 1754, 150)
    assert page.image.dtype == np.uint8 and page.image.shape == (1754, 1240, 3)
    high = load_one(report, high_resolution=True)
    assert (high.width, high.height, high.dpi) == (2480, 3508, 300)
    # The same span, twice the pixels.
    low_span, high_span = page.spans[1], high.spans[1]  # type: ignore[index]
    assert high_span.text == low_span.text == HEADING
    assert high_span.bbox.left == pytest.approx(2 * low_span.bbox.left, abs=1)
    assert high_span.font_size == pytest.approx(2 * low_span.font_size, abs=0.1)


def test_text_layer_spans(report_150: Page) -> None:
    page = report_150
    assert page.spans and page.has_text_layer
    texts = [s.text for s in page.spans]
    assert texts[0] == HEADER and texts[-1] == FOOTER
    heading = next(s for s in page.spans if s.text == HEADING)
    body = next(s for s in page.spans if s.text.startswith("The quick brown fox"))
    # 24 pt and 11 pt at 150 DPI, in pixels.
    assert heading.font_size == pytest.approx(24 * 150 / 72)
    assert body.font_size == pytest.approx(11 * 150 / 72)
    assert heading.bold and not body.bold
    # Header on top, footer at the bottom, in page pixels.
    header, footer = page.spans[0], page.spans[-1]
    assert header.bbox.bottom < 0.06 * page.height
    assert footer.bbox.top > 0.95 * page.height
    # Every paragraph word is in the layer, in order.
    layer = " ".join(" ".join(s.text.split()) for s in page.spans)
    for text in PARAGRAPHS:
        assert text in layer
    # Spans of one wrapped paragraph share a block and count their lines.
    para = [s for s in page.spans if s.block == body.block]
    assert [s.line for s in para] == list(range(len(para))) and len(para) >= 2


def test_span_boxes_match_the_ink(report_150: Page) -> None:
    page = report_150
    heading = next(s for s in page.spans or [] if s.text == HEADING)
    grown = BBox(
        heading.bbox.left - 3, heading.bbox.top - 3, heading.bbox.width + 6, heading.bbox.height + 6
    )
    ink = ink_box(page.image, grown)
    # The glyphs sit inside the span box (the box includes ascender/descender room).
    assert ink.left == pytest.approx(heading.bbox.left, abs=4)
    assert ink.right == pytest.approx(heading.bbox.right, abs=4)
    assert heading.bbox.top - 1 <= ink.top and ink.bottom <= heading.bbox.bottom + 1
    assert ink.height > 0.5 * heading.bbox.height


def test_ruled_table_cells_exact(report_150: Page) -> None:
    (table,) = report_150.tables
    assert table.rows == TABLE  # punctuation intact: "Widget, large", "$4.50", "#7"
    scale = 150 / 72
    assert table.bbox.left == pytest.approx(TABLE_X * scale, abs=2)
    assert table.bbox.top == pytest.approx(TABLE_Y * scale, abs=2)
    assert table.bbox.width == pytest.approx(3 * COL_W * scale, abs=3)
    assert table.bbox.height == pytest.approx(len(TABLE) * ROW_H * scale, abs=3)


@pytest.mark.parametrize(("rotate", "draw"), [(90, 90), (180, 180), (270, -90)])
def test_rotated_page_maps_like_the_upright_one(report_150: Page, rotate: int, draw: int) -> None:
    # A page stored sideways with /Rotate, its content drawn so it displays upright
    # (what scanners and "rotate page" tools write): it must look and map exactly
    # like the upright page.
    src = pymupdf.open()
    report_page(src)
    doc = pymupdf.open()
    size = (A4.width, A4.height) if rotate == 180 else (A4.height, A4.width)
    page = doc.new_page(width=size[0], height=size[1])
    page.set_rotation(rotate)
    page.show_pdf_page(page.mediabox, src, 0, rotate=draw)
    rotated = load_one(doc.tobytes())
    upright = report_150
    assert rotated.image.shape == upright.image.shape
    assert (np.abs(rotated.image.astype(int) - upright.image) > 40).mean() < 1e-4
    assert rotated.spans and upright.spans
    assert [s.text for s in rotated.spans] == [s.text for s in upright.spans]
    for got, want in zip(rotated.spans, upright.spans, strict=True):
        assert got.bbox.left == pytest.approx(want.bbox.left, abs=0.5)
        assert got.bbox.top == pytest.approx(want.bbox.top, abs=0.5)
        assert got.bbox.width == pytest.approx(want.bbox.width, abs=0.5)
    assert [t.rows for t in rotated.tables] == [TABLE]
    assert rotated.tables[0].bbox.left == pytest.approx(upright.tables[0].bbox.left, abs=0.5)
    assert rotated.tables[0].bbox.top == pytest.approx(upright.tables[0].bbox.top, abs=0.5)


def test_page_selection_and_count() -> None:
    data = report_pdf(pages=3)
    assert count_pages(data) == 3
    pages = load_pages(
        data, file_name="r.pdf", high_resolution=False, max_pages=3, page_numbers=[3, 1]
    )
    assert [p.number for p in pages] == [3, 1]
    assert [
        p.number for p in iter_pages(data, file_name=None, high_resolution=False, max_pages=3)
    ] == [1, 2, 3]
    with pytest.raises(BadRequest, match="Page 4 does not exist; the document has 3 pages"):
        load_pages(data, file_name=None, high_resolution=False, max_pages=3, page_numbers=[4])


def test_page_limit() -> None:
    data = report_pdf(pages=3)
    with pytest.raises(BadRequest) as exc:
        load_pages(data, file_name="big.pdf", high_resolution=False, max_pages=2)
    assert exc.value.status == 400
    assert exc.value.message == "Document has 3 pages; the limit is 2"
    assert exc.value.details == {"pages": 3, "max_pages": 2}


# --- PDF: bad input ------------------------------------------------------------------------


def encrypted(user_pw: str) -> bytes:
    doc = pymupdf.open()
    report_page(doc)
    buf = io.BytesIO()
    doc.save(buf, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw=user_pw, owner_pw="owner-secret")
    return buf.getvalue()


def test_encrypted_pdf_is_refused() -> None:
    data = encrypted("s3cret")
    for call in (
        count_pages,
        lambda d: load_pages(d, file_name="x.pdf", high_resolution=False, max_pages=MAX_PAGES),
    ):
        with pytest.raises(BadRequest) as exc:
            call(data)
        assert exc.value.status == 400
        assert exc.value.message == "Encrypted PDFs are not supported"


def test_owner_password_only_pdf_is_read() -> None:
    # Encrypted for permissions only: the empty user password opens it.
    page = load_one(encrypted(""))
    assert any(s.text == HEADING for s in page.spans or [])


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_pdf(report: bytes, fraction: float) -> None:
    data = report[: int(len(report) * fraction)]
    with pytest.raises(BadRequest, match=r"^Invalid PDF") as exc:
        load_pages(data, file_name=None, high_resolution=False, max_pages=MAX_PAGES)
    assert exc.value.status == 400
    with pytest.raises(BadRequest, match=r"^Invalid PDF"):
        count_pages(data)


@pytest.mark.parametrize("data", [b"%PDF-", b"%PDF-1.7\n" + bytes(range(256)) * 8])
def test_garbage_behind_a_pdf_header(data: bytes) -> None:
    with pytest.raises(BadRequest, match=r"^Invalid PDF") as exc:
        count_pages(data)
    assert exc.value.status == 400


def zero_page_pdf() -> bytes:
    """A well-formed PDF whose page tree is empty (PyMuPDF refuses to save one)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [] /Count 0 >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def test_zero_page_pdf() -> None:
    data = zero_page_pdf()
    assert pymupdf.open(stream=data, filetype="pdf").page_count == 0  # it is valid PDF
    with pytest.raises(BadRequest, match="no pages") as exc:
        load_pages(data, file_name=None, high_resolution=False, max_pages=MAX_PAGES)
    assert exc.value.status == 400


def test_oversized_page_fails_alone_with_continue_on_error() -> None:
    doc = pymupdf.open()
    report_page(doc)
    huge = doc.new_page(width=14_400, height=14_400)  # 200 inches: a render bomb
    huge.insert_text((72, 72), "huge", fontsize=12)
    report_page(doc)
    data = doc.tobytes()
    with pytest.raises(BadRequest, match="Page 2 is 30000x30000 pixels") as exc:
        load_pages(data, file_name=None, high_resolution=False, max_pages=MAX_PAGES)
    assert exc.value.status == 400
    pages = load_pages(
        data, file_name=None, high_resolution=False, max_pages=MAX_PAGES, continue_on_error=True
    )
    assert [p.error is None for p in pages] == [True, False, True]
    failed = pages[1]
    assert "limit" in (failed.error or "")
    assert failed.spans is None and failed.image.shape == (1754, 1240, 3)  # a blank A4
    assert failed.image.min() == 255
    assert pages[2].spans and pages[2].tables[0].rows == TABLE


# --- images --------------------------------------------------------------------------


def scene(size: tuple[int, int] = (320, 200), color: str = "navy") -> Image.Image:
    img = Image.new("RGB", size, "white")
    img.paste(Image.new("RGB", (size[0] // 2, size[1] // 2), color), (10, 10))
    return img


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_single_images(fmt: str) -> None:
    data = encoded(scene(), fmt)
    # The name says PDF; the bytes decide.
    page = load_one(data, file_name="scan.pdf")
    assert (page.width, page.height) == (320, 200)
    assert page.image.dtype == np.uint8 and page.image.shape == (200, 320, 3)
    assert page.spans is None and page.tables == [] and page.error is None
    assert page.image[50, 50].tolist() == pytest.approx([0, 0, 128], abs=12)
    assert count_pages(data) == 1


def test_multipage_tiff() -> None:
    colors = ["red", "green", "blue", "black"]
    frames = [scene((300 + 10 * i, 200), c) for i, c in enumerate(colors)]
    data = encoded(frames[0], "TIFF", save_all=True, append_images=frames[1:], dpi=(200, 200))
    assert count_pages(data) == 4
    pages = load_pages(data, file_name=None, high_resolution=False, max_pages=MAX_PAGES)
    assert [p.number for p in pages] == [1, 2, 3, 4]
    assert [p.width for p in pages] == [300, 310, 320, 330]
    expected = [(255, 0, 0), (0, 128, 0), (0, 0, 255), (0, 0, 0)]
    assert [tuple(p.image[40, 40]) for p in pages] == expected
    assert {p.dpi for p in pages} == {200}
    (third,) = load_pages(
        data, file_name=None, high_resolution=False, max_pages=4, page_numbers=[3]
    )
    assert tuple(third.image[40, 40]) == (0, 0, 255)
    with pytest.raises(BadRequest, match="Document has 4 pages; the limit is 3"):
        load_pages(data, file_name=None, high_resolution=False, max_pages=3)


def test_exif_orientation_is_applied() -> None:
    img = scene((320, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    page = load_one(encoded(img, "JPEG", exif=exif.tobytes()))
    assert (page.width, page.height) == (200, 320)
    # The navy block was top-left; after a clockwise turn it is top-right.
    assert page.image[40, 160].tolist() == pytest.approx([0, 0, 128], abs=12)
    assert page.image[40, 20].tolist() == pytest.approx([255, 255, 255], abs=12)


def square(mode: str) -> Image.Image:
    """A 64x48 image with a black square at (8..24, 8..24); the rest white or transparent."""
    if mode in ("RGBA", "LA"):
        img = Image.new("RGBA", (64, 48), (0, 0, 0, 0))  # transparent black
        img.paste((0, 0, 0, 255), (8, 8, 24, 24))
        return img.convert(mode)
    img = Image.new("RGB", (64, 48), "white")
    img.paste((0, 0, 0), (8, 8, 24, 24))
    if mode == "I;16":
        return Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)
    return img.convert(mode)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("RGBA", "PNG"),
        ("LA", "PNG"),
        ("L", "PNG"),
        ("1", "PNG"),
        ("P", "PNG"),
        ("CMYK", "TIFF"),
        ("I;16", "PNG"),
        ("I;16", "TIFF"),
    ],
)
def test_modes_become_rgb(mode: str, fmt: str) -> None:
    page = load_one(encoded(square(mode), fmt))
    assert page.image.shape == (48, 64, 3) and page.image.dtype == np.uint8
    assert page.image[16, 16].tolist() == [0, 0, 0]
    # White stays white; transparency becomes white paper, not black.
    assert page.image[40, 50].tolist() == [255, 255, 255]


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb() -> None:
    for call in (
        count_pages,
        lambda d: load_pages(d, file_name=None, high_resolution=False, max_pages=MAX_PAGES),
    ):
        with pytest.raises(InvalidImage, match="the limit is") as exc:
            call(bomb_png())
        assert exc.value.status == 400


def test_bomb_frame_in_a_tiff() -> None:
    small, big = scene((100, 80)), Image.new("1", (6000, 6000))
    data = encoded(
        small, "TIFF", save_all=True, append_images=[big], compression="tiff_adobe_deflate"
    )
    pages = load_pages(
        data,
        file_name=None,
        high_resolution=False,
        max_pages=MAX_PAGES,
        max_pixels=10_000_000,
        continue_on_error=True,
    )
    assert pages[0].error is None and pages[0].width == 100
    assert pages[1].error == "Page 2 is 6000x6000 pixels; the limit is 10000000 pixels"
    with pytest.raises(InvalidImage, match="Page 2 is 6000x6000"):
        load_pages(
            data, file_name=None, high_resolution=False, max_pages=MAX_PAGES, max_pixels=10_000_000
        )


def test_truncated_image() -> None:
    data = encoded(scene((400, 300)), "PNG")
    with pytest.raises(BadRequest) as exc:
        load_pages(
            data[: len(data) // 2], file_name=None, high_resolution=False, max_pages=MAX_PAGES
        )
    assert exc.value.status == 400


def test_table_cells_read_as_get_textbox_reads_them() -> None:
    """Cells are read from the page's characters, walked once (source._char_lines);
    they must say what ``page.get_textbox`` says for each, on rotated pages too."""
    from tests.documents_fixtures import report_pdf
    from tests.extract_fixtures import corpus
    from visionserve.models.documents.source import _char_lines, _text_in

    rotated = pymupdf.open(stream=report_pdf(4), filetype="pdf")
    for page, angle in zip(rotated, (90, 180, 270, 0), strict=True):
        page.set_rotation(angle)
    docs = [rotated.tobytes()] + [g.data for g in corpus(languages=("en", "de", "fr", "es"))]
    cells = 0
    for data in docs:
        for page in pymupdf.open(stream=data, filetype="pdf"):
            lines = _char_lines(page)
            for table in page.find_tables(use_layout=False).tables:
                for row in table.rows:
                    for cell in filter(None, row.cells):
                        rect = pymupdf.Rect(cell) * page.derotation_matrix
                        assert _text_in(lines, rect) == " ".join(page.get_textbox(rect).split())
                        cells += 1
    assert cells > 100, cells
