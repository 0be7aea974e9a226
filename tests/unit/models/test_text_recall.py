"""No word of a digital PDF's text layer goes missing between the PDF and its chunks.

Varied pages are drawn with pymupdf here (an invoice whose logo, title and slogan the
layout model reads as one picture, a two-column article, a ruled table, a figure with
labels inside it, running headers and footers, lists, small and rotated type) and run
through the real documents pipeline without Ray: the text layer (``ocr_strategy``
``Auto``), the real CDLA layout model, segments, chunks. Word recall is the share of
the text layer's words (``page.get_text("words")``, lowercased, punctuation stripped)
found, as a multiset, in the chunks' segment contents.
"""

from __future__ import annotations

import io
import re
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import pymupdf
import pytest
from PIL import Image, ImageDraw

from visionserve.models.documents.config import Configuration
from visionserve.models.documents.pipeline import DocumentPipeline
from visionserve.models.documents.segments import build_segments
from visionserve.models.documents.segments.lines import image_text_lines
from visionserve.models.documents.types import (
    BBox,
    Chunk,
    Page,
    Region,
    Segment,
    SegmentType,
    TextSpan,
    Word,
)

MIN_RECALL = 0.99
A4 = (595, 842)

BODY = (
    "Shipping costs rose sharply in the second half of the year, which pushed several "
    "customers to consolidate their orders into fewer and larger deliveries. The warehouse "
    "team adapted the picking routes so that the busiest aisles are served first."
)
GREEK = [
    *("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"),
    *("lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon"),
    *("phi", "chi", "psi", "omega"),
]


# --- images -------------------------------------------------------------------------------


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _logo() -> bytes:
    """A round two-colour emblem, as company logos are."""
    img = Image.new("RGB", (160, 160), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.ellipse((5, 5, 155, 155), fill=(20, 80, 160))
    draw.rectangle((53, 40, 107, 120), fill=(240, 180, 30))
    return _png(img)


def _gradient(w: int = 400, h: int = 300) -> bytes:
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 200 // w + 20, y * 100 // h + 60, np.full_like(x, 180)], -1)
    return _png(Image.fromarray(rgb.astype(np.uint8)))


# --- the documents ------------------------------------------------------------------------


def _paragraph(page: pymupdf.Page, rect: tuple[float, float, float, float], text: str) -> None:
    assert page.insert_textbox(pymupdf.Rect(*rect), text, fontsize=10, fontname="helv") >= 0


def _ruled_table(
    page: pymupdf.Page, left: float, top: float, cols: list[float], rows: list[list[str]]
) -> None:
    """A grid of cells; ``cols`` are the column widths in points."""
    edges = [left + sum(cols[:i]) for i in range(len(cols) + 1)]
    height = 20
    for r in range(len(rows) + 1):
        page.draw_line((edges[0], top + r * height), (edges[-1], top + r * height))
    for x in edges:
        page.draw_line((x, top), (x, top + len(rows) * height))
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            bold = "hebo" if r == 0 else "helv"
            page.insert_text((edges[c] + 4, top + r * height + 14), cell, fontsize=9, fontname=bold)


LOGO_NAME = "Northwind Traders"
LOGO_SLOGAN = "Quality goods since 1987"


def _letterhead_png() -> bytes:
    """A company letterhead as one picture: an emblem with the name and slogan drawn in it.

    Drawn by MuPDF and rasterised, so the words are pixels only: the PDF that shows
    this image has no text layer for them.
    """
    doc = pymupdf.open()
    page = doc.new_page(width=320, height=80)
    page.draw_circle((40, 40), 36, color=None, fill=(0.08, 0.31, 0.63))
    page.draw_rect(pymupdf.Rect(28, 20, 52, 60), color=None, fill=(0.94, 0.7, 0.12))
    page.insert_text((90, 38), LOGO_NAME, fontsize=24, fontname="hebo", color=(0.08, 0.16, 0.35))
    page.insert_text((90, 62), LOGO_SLOGAN, fontsize=14, fontname="heit", color=(0.3, 0.3, 0.3))
    return page.get_pixmap(dpi=200).tobytes("png")


def _invoice_body(page: pymupdf.Page) -> None:
    page.insert_text((430, 70), "INVOICE", fontsize=20, fontname="hebo")
    page.insert_text((430, 90), "Invoice no. 2024-0117", fontsize=9)
    page.insert_text((430, 103), "Date: 12 March 2024", fontsize=9)
    y = 180
    for line in ("Bill to:", "Contoso Ltd", "42 Harbour Road", "Springfield 90210"):
        page.insert_text((50, y), line, fontsize=10)
        y += 14
    rows = [
        ["Description", "Qty", "Unit price", "Amount"],
        ["Widget A", "4", "12.50", "50.00"],
        ["Gadget B", "2", "30.00", "60.00"],
        ["Installation service", "1", "25.00", "25.00"],
    ]
    _ruled_table(page, 50, 260, [250, 60, 90, 95], rows)
    page.insert_text((400, 362), "Total due: 135.00 EUR", fontsize=11, fontname="hebo")
    _paragraph(
        page,
        (50, 400, 545, 460),
        "Payment is due within thirty days. Please quote the invoice number with your "
        "transfer. Thank you for your business.",
    )
    page.insert_text(
        (50, 800), "Northwind Traders, 1 Market Street, Portland - VAT GB123456789", fontsize=8
    )


def invoice_pdf() -> bytes:
    """The issue's invoice: a letterhead picture whose name and slogan exist only as pixels."""
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_image(pymupdf.Rect(50, 40, 370, 120), stream=_letterhead_png())
    _invoice_body(page)
    return doc.tobytes()


def invoice_layer_pdf() -> bytes:
    """A logo image with the name set over it and the slogan beside, both in the text layer."""
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_image(pymupdf.Rect(50, 40, 170, 160), stream=_logo())
    page.insert_text((58, 95), LOGO_NAME, fontsize=20, fontname="hebo", color=(1, 1, 1))
    page.insert_text((175, 130), LOGO_SLOGAN, fontsize=10, fontname="heit")
    _invoice_body(page)
    return doc.tobytes()


def two_column_pdf() -> bytes:
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((50, 70), "Field Notes on Warehouse Design", fontsize=20, fontname="hebo")
    page.insert_text((50, 92), "by J. Doe and R. Roe", fontsize=10, fontname="heit")
    for left in (50, 310):
        top = 115.0
        for k in range(4):
            words = GREEK[k * 5 :] + GREEK[: k * 5]
            text = f"Section {k + 1} ({'left' if left == 50 else 'right'}). {BODY} " + " ".join(
                words
            )
            _paragraph(page, (left, top, left + 235, top + 160), text)
            top += 165
    return doc.tobytes()


def table_pdf() -> bytes:
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((50, 70), "Quarterly Inventory", fontsize=18, fontname="hebo")
    _paragraph(page, (50, 85, 545, 130), BODY)
    rows = [["Item", "Location", "On hand", "Reserved", "Reorder at"]]
    rows += [
        [f"Part {GREEK[i]}", f"Aisle {i % 4 + 1}", str(100 + 7 * i), str(3 * i), str(40 + i)]
        for i in range(12)
    ]
    _ruled_table(page, 50, 150, [140, 90, 80, 80, 90], rows)
    page.insert_text((50, 440), "Table 1: Stock levels at the end of March.", fontsize=9)
    return doc.tobytes()


def figure_pdf() -> bytes:
    """A chart: an image with bars, axis labels and a title drawn inside it, then a caption."""
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((50, 60), "Annual Report 2023", fontsize=20, fontname="hebo")
    page.insert_image(pymupdf.Rect(80, 100, 480, 400), stream=_gradient())
    for i, label in enumerate(("North", "South", "East", "West")):
        x = 120 + i * 85
        page.draw_rect(pymupdf.Rect(x, 300 - i * 40, x + 50, 380), fill=(0.9, 0.5, 0.1))
        page.insert_text((x, 395), label, fontsize=9)
    page.insert_text((100, 125), "Revenue by region", fontsize=12, fontname="hebo")
    page.insert_text((90, 200), "EUR m", fontsize=8)
    page.insert_text((80, 420), "Figure 1: Revenue by region in 2023.", fontsize=9, fontname="heit")
    _paragraph(page, (50, 450, 545, 540), BODY)
    return doc.tobytes()


CHART_LABELS = ["Orders per month", "Jan", "Feb", "Mar", "Apr", "Units sold"]


def _chart_png() -> bytes:
    """A bar chart exported as an image: its title and labels are pixels only."""
    doc = pymupdf.open()
    page = doc.new_page(width=400, height=260)
    page.insert_text((120, 30), CHART_LABELS[0], fontsize=18, fontname="hebo")
    page.draw_line((60, 220), (380, 220))
    page.draw_line((60, 50), (60, 220))
    for i, month in enumerate(CHART_LABELS[1:5]):
        x = 90 + i * 75
        page.draw_rect(pymupdf.Rect(x, 200 - 35 * i, x + 40, 220), color=None, fill=(0.2, 0.5, 0.8))
        page.insert_text((x + 4, 245), month, fontsize=16, fontname="helv")
    page.insert_text((30, 200), CHART_LABELS[5], fontsize=14, fontname="helv", rotate=90)
    return page.get_pixmap(dpi=150).tobytes("png")


def chart_pdf() -> bytes:
    """A pasted chart image with a caption and text around it."""
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((50, 60), "Sales Review", fontsize=20, fontname="hebo")
    _paragraph(page, (50, 80, 545, 150), BODY)
    page.insert_image(pymupdf.Rect(100, 170, 500, 430), stream=_chart_png())
    page.insert_text((100, 450), "Figure 2: Orders per month in 2024.", fontsize=9, fontname="heit")
    _paragraph(page, (50, 470, 545, 540), BODY)
    return doc.tobytes()


def running_pdf() -> bytes:
    """Three pages with a running header and a page-number footer."""
    doc = pymupdf.open()
    for number in range(1, 4):
        page = doc.new_page(width=A4[0], height=A4[1])
        page.insert_text((50, 36), "Northwind Traders - Operations Handbook", fontsize=8)
        page.insert_text((480, 36), "Confidential", fontsize=8)
        page.insert_text((50, 80), f"Chapter {number}", fontsize=16, fontname="hebo")
        for k in range(3):
            top = 100 + k * 110
            _paragraph(page, (50, top, 545, top + 100), f"{GREEK[number + k]} {BODY}")
        page.insert_text((280, 815), f"Page {number} of 3", fontsize=8)
    return doc.tobytes()


def lists_pdf() -> bytes:
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((50, 70), "Checklist for New Staff", fontsize=18, fontname="hebo")
    y = 100.0
    items = (
        "Collect your badge from reception",
        "Read the safety handbook before your first shift in the warehouse, and sign "
        "the form at the back of it",
        "Meet your team lead",
    )
    for item in items:
        page.insert_text((60, y), "•", fontsize=10)
        _paragraph(page, (72, y - 9, 545, y + 25), item)
        y += 30 if len(item) > 60 else 18
    y += 10
    for i, step in enumerate(("Log in to the terminal", "Scan the shelf code", "Confirm count")):
        page.insert_text((60, y), f"{i + 1}. {step}", fontsize=10)
        y += 16
    for j, sub in enumerate(("a) check the label", "b) report damage")):
        page.insert_text((80, y + j * 16), sub, fontsize=10)
    return doc.tobytes()


def small_rotated_pdf() -> bytes:
    """Fine print, a vertical margin note and a page rotated by 90 degrees."""
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((50, 70), "Terms and Conditions", fontsize=18, fontname="hebo")
    _paragraph(page, (50, 90, 545, 170), BODY)
    fine = pymupdf.Rect(50, 700, 545, 780)
    page.insert_textbox(fine, BODY + " " + " ".join(GREEK), fontsize=6, fontname="helv")
    page.insert_text((30, 600), "Document reference NW-2024-117", fontsize=7, rotate=90)
    turned = doc.new_page(width=A4[0], height=A4[1])
    _paragraph(turned, (50, 60, 545, 160), "Landscape annex. " + BODY)
    turned.set_rotation(90)
    return doc.tobytes()


DOCUMENTS: dict[str, Callable[[], bytes]] = {
    "invoice": invoice_pdf,
    "invoice_layer": invoice_layer_pdf,
    "two_column": two_column_pdf,
    "table": table_pdf,
    "figure": figure_pdf,
    "chart": chart_pdf,
    "running": running_pdf,
    "lists": lists_pdf,
    "small_rotated": small_rotated_pdf,
}


# Words each document shows only as pixels in its images (no text layer): OCR must find them.
IMAGE_WORDS = {
    "invoice": f"{LOGO_NAME} {LOGO_SLOGAN}",
    "chart": " ".join(CHART_LABELS),
}


# --- measuring ----------------------------------------------------------------------------


def _normalise(words: list[str]) -> Counter[str]:
    cleaned = (re.sub(r"[^\w]", "", w.lower()) for w in words)
    return Counter(w for w in cleaned if w)


def text_layer_words(data: bytes) -> Counter[str]:
    doc = pymupdf.open(stream=data, filetype="pdf")
    pages = [doc[i] for i in range(doc.page_count)]
    return _normalise([w[4] for page in pages for w in page.get_text("words")])


def chunk_words(chunks: list[Chunk]) -> Counter[str]:
    return _normalise(" ".join(s.content for c in chunks for s in c.segments).split())


def reference_words(name: str, data: bytes) -> Counter[str]:
    """The words a reader sees on the document: its text layer and its images' words."""
    return text_layer_words(data) + _normalise(IMAGE_WORDS.get(name, "").split())


def recall(want: Counter[str], chunks: list[Chunk]) -> tuple[float, Counter[str]]:
    """The share of ``want`` (a multiset) found in the chunks, and what is missing."""
    missing = want - chunk_words(chunks)
    return 1 - sum(missing.values()) / max(sum(want.values()), 1), missing


# Headers and footers are dropped by default (the contract's ignore_headers_and_footers):
# every word of the page must reach the output when they are kept.
CONFIG = Configuration(ocr_strategy="Auto", chunk_processing={"ignore_headers_and_footers": False})


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> DocumentPipeline:
    return DocumentPipeline(tmp_path_factory.mktemp("model-home"), threads=2)


@pytest.fixture(scope="module")
def parsed(pipeline: DocumentPipeline) -> dict[str, tuple[bytes, list[Chunk]]]:
    """Every document through the whole pipeline, once."""
    out = {}
    for name, make in DOCUMENTS.items():
        data = make()
        start = time.perf_counter()
        out[name] = data, pipeline.parse(data, CONFIG).chunks
        print(f"{name}: parsed in {time.perf_counter() - start:.2f} s")
    return out


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_word_recall(name: str, parsed: dict[str, tuple[bytes, list[Chunk]]]) -> None:
    data, chunks = parsed[name]
    value, missing = recall(reference_words(name, data), chunks)
    print(f"{name}: word recall {value:.4f}")
    assert value >= MIN_RECALL, f"{name}: recall {value:.4f}, missing {dict(missing)}"


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_no_word_is_invented_or_doubled(
    name: str, parsed: dict[str, tuple[bytes, list[Chunk]]]
) -> None:
    """OCR'd image text must not repeat the text layer's words (OCR boxes sit a little off)."""
    data, chunks = parsed[name]
    got = chunk_words(chunks)
    extra = got - reference_words(name, data)
    assert sum(extra.values()) <= (1 - MIN_RECALL) * sum(got.values()), dict(extra)


def _pictures(chunks: list[Chunk]) -> list[Segment]:
    return [s for c in chunks for s in c.segments if s.segment_type == SegmentType.PICTURE]


def test_text_in_a_picture_stays_in_its_segment(
    parsed: dict[str, tuple[bytes, list[Chunk]]],
) -> None:
    # Text-layer words set over a logo the detector reads as a picture.
    _, chunks = parsed["invoice_layer"]
    assert any(LOGO_NAME in s.content for s in _pictures(chunks))
    # A chart pasted as an image: its labels, read by OCR, are the picture's content, in rows.
    _, chunks = parsed["chart"]
    (chart,) = [s for s in _pictures(chunks) if "Jan" in s.content]
    assert "Jan Feb Mar Apr" in chart.content
    assert chart.text == chart.content and "Jan Feb Mar Apr" in chart.markdown
    assert {w.text for w in chart.ocr} >= {"Jan", "Feb", "Mar", "Apr"}


# --- image text beside a text layer, without models -------------------------------------------


def _span(text: str, x: float, y: float) -> TextSpan:
    return TextSpan(BBox(x, y, 10.0 * len(text), 20.0), text, 20.0)


def test_image_text_lines_keep_only_what_the_layer_lacks() -> None:
    image = np.full((400, 600, 3), 255, np.uint8)
    spans = [_span("Invoice", 50, 50), _span("a", 200, 50)]
    words = [
        Word(BBox(50, 50, 70, 20), "Invoice", 1.0),  # the layer's own word (Auto adds those)
        Word(BBox(195, 46, 10, 28), "a", 0.96),  # OCR of the layer's "a", a few pixels off
        Word(BBox(60, 200, 90, 24), "Northwind", 0.93),  # text inside a logo
        Word(BBox(160, 200, 70, 24), "Traders", 0.91),
        Word(BBox(60, 300, 30, 24), "Ltd", 0.2),  # a faint guess
        Word(BBox(100, 300, 10, 24), "|", 0.9),  # a rule read as a letter
    ]
    page = Page(number=1, image=image, dpi=150, spans=spans, words=words)
    lines = image_text_lines(page)
    assert [line.text for line in lines] == ["Northwind Traders"]
    assert [w.text for w in lines[0].words] == ["Northwind", "Traders"]


def test_image_text_joins_its_picture_or_stands_as_text() -> None:
    image = np.full((600, 800, 3), 255, np.uint8)
    spans = [_span("Payment is due within thirty days", 50, 400)]
    words = [
        Word(BBox(60, 60, 90, 24), "Northwind", 0.93),  # inside the detected logo
        Word(BBox(500, 60, 90, 24), "Portland", 0.9),  # in an image the detector missed
    ]
    page = Page(number=1, image=image, dpi=150, spans=spans, words=words)
    logo = Region(SegmentType.PICTURE, BBox(40, 40, 200, 100), 0.9)
    segments = build_segments(page, [logo], id_prefix="t")
    by_text = {s.text: s.segment_type for s in segments}
    assert by_text["Northwind"] == SegmentType.PICTURE
    assert by_text["Portland"] == SegmentType.TEXT
    assert by_text["Payment is due within thirty days"] == SegmentType.TEXT
