"""Layout segments on PDFs generated here: types, reading order, tables, no lost words.

The document is drawn with pymupdf in the test: page 1 has a title, section headers,
paragraphs, a bulleted list (one item wraps), a ruled table, a picture with a caption,
a display formula and a footnote; page 2 has two columns under a section header. Both
pages carry the same running header and a "Page N of 2" footer.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pymupdf
import pytest
from PIL import Image

from visionserve.errors import BadRequest
from visionserve.models.documents.layout import LayoutModel
from visionserve.models.documents.segments import (
    DocumentStyle,
    SegmentPlan,
    apply_segment_processing,
    attach_image,
    build_segments,
    crop,
    document_style,
    drop_headers_footers,
)
from visionserve.models.documents.types import (
    BBox,
    Page,
    Region,
    Segment,
    SegmentType,
    TableCells,
    TextSpan,
    Word,
)
from visionserve.models.weights import WeightError

DPI = 150
SCALE = DPI / 72
W, H = 612, 792

TITLE = "Quarterly Layout Report"
TABLE_ROWS = [["Region", "Count", "Score"], ["Heading", "1", "0.98"], ["Grid", "2", "<5 & more"]]
TABLE_RECT = (72, 280, 522, 340)  # points
PICTURE_RECT = (72, 360, 272, 480)
FORMULA = "E = mc^2"
GREEK = [
    *("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"),
    *("kappa", "lambda", "mu", "nu", "xi", "omicron", "pi", "rho"),
]
ST = SegmentType


# --- the document -----------------------------------------------------------------------


def _gradient_png() -> bytes:
    y, x = np.mgrid[0:120, 0:200]
    rgb = np.stack([x * 255 // 200, y * 255 // 120, np.full_like(x, 160)], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def _running(page: pymupdf.Page, number: int) -> None:
    page.insert_text((72, 36), "ACME Research - Internal Report", fontsize=9, fontname="helv")
    page.insert_text((280, 770), f"Page {number} of 2", fontsize=9, fontname="helv")


def _page_one(doc: pymupdf.Document) -> None:
    page = doc.new_page(width=W, height=H)
    _running(page, 1)
    page.insert_text((72, 90), TITLE, fontsize=24, fontname="hebo")
    page.insert_text((72, 125), "Introduction", fontsize=15, fontname="hebo")
    page.insert_textbox(
        pymupdf.Rect(72, 132, 540, 190),
        "This report describes how pages are split into segments. Every paragraph keeps "
        "its words, and the reading order follows the columns of the page from left to right.",
        fontsize=10,
        fontname="helv",
    )
    page.insert_text((72, 205), "Findings", fontsize=15, fontname="hebo")
    page.insert_text((84, 224), "- Layout regions are detected on every page.", fontsize=10)
    page.insert_text((84, 238), "- Tables keep their rows and cells, and long items", fontsize=10)
    page.insert_text((93, 250), "wrap onto a second line.", fontsize=10)
    page.insert_text((84, 264), "- Pictures are cropped for storage.", fontsize=10)
    x0, y0, x1, _ = TABLE_RECT
    col, row = (x1 - x0) / 3, 20
    for i in range(len(TABLE_ROWS) + 1):
        page.draw_line((x0, y0 + i * row), (x1, y0 + i * row))
    for j in range(4):
        page.draw_line((x0 + j * col, y0), (x0 + j * col, y0 + len(TABLE_ROWS) * row))
    for i, cells in enumerate(TABLE_ROWS):
        for j, cell in enumerate(cells):
            page.insert_text((x0 + j * col + 5, y0 + i * row + 14), cell, fontsize=10)
    page.insert_image(pymupdf.Rect(*PICTURE_RECT), stream=_gradient_png())
    page.insert_text(
        (72, 495), "Figure 1: A generated gradient picture.", fontsize=9, fontname="heit"
    )
    page.insert_text((270, 540), FORMULA, fontsize=12, fontname="tiro")
    page.insert_textbox(
        pymupdf.Rect(72, 560, 540, 640),
        "The formula above is kept as text. More body text follows here so that the body "
        "size is the most common size on the page, as in real documents.",
        fontsize=10,
        fontname="helv",
    )
    page.insert_text(
        (72, 740), "1 Footnote: all numbers are synthetic and for testing only.", fontsize=7
    )


def _page_two(doc: pymupdf.Document) -> None:
    page = doc.new_page(width=W, height=H)
    _running(page, 2)
    page.insert_text((72, 90), "Two Column Section", fontsize=15, fontname="hebo")
    for left, side in ((72, "Left"), (320, "Right")):
        for k in range(3):
            top = 110 + k * 120
            text = f"{side} paragraph {k + 1}. " + " ".join(GREEK[k * 4 :] + GREEK[: k * 4])
            rect = pymupdf.Rect(left, top, left + 220, top + 110)
            assert page.insert_textbox(rect, text, fontsize=10, fontname="helv") > 0


@pytest.fixture(scope="module")
def pdf() -> list[pymupdf.Page]:
    doc = pymupdf.open()
    _page_one(doc)
    _page_two(doc)
    return [doc[i] for i in range(doc.page_count)]


def _box(rect: tuple[float, float, float, float]) -> BBox:
    return BBox.from_corners(*(v * SCALE for v in rect))


def _render(pdf_page: pymupdf.Page) -> np.ndarray:
    pix = pdf_page.get_pixmap(dpi=DPI)
    return np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, pix.n)[..., :3]


def to_page(pdf_page: pymupdf.Page, *, text_layer: bool = True) -> Page:
    """A Page as the source step builds it: text layer and ruled tables, in image pixels."""
    number = pdf_page.number + 1
    image = _render(pdf_page).copy()
    if not text_layer:
        # A scanned page: no spans; OCR words (here: the exact words, as a perfect OCR).
        words = [
            Word(_box(w[:4]), w[4], 0.9)
            for w in pdf_page.get_text("words", sort=True)  # type: ignore[union-attr]
        ]
        return Page(number=number, image=image, dpi=DPI, spans=None, words=words)
    spans = []
    for block in pdf_page.get_text("dict")["blocks"]:  # type: ignore[index]
        if block["type"] != 0:
            continue
        for index, line in enumerate(block["lines"]):
            for span in line["spans"]:
                spans.append(
                    TextSpan(
                        _box(span["bbox"]),
                        span["text"],
                        span["size"] * SCALE,  # pixels, as the source step gives them
                        bold=bool(span["flags"] & 16),
                        block=block["number"],
                        line=index,
                    )
                )
    tables = [
        TableCells(
            _box(table.bbox),
            [
                [(pdf_page.get_textbox(c) or "").strip() if c else "" for c in r.cells]
                for r in table.rows
            ],
        )
        for table in pdf_page.find_tables(use_layout=False).tables
    ]
    return Page(number=number, image=image, dpi=DPI, spans=spans, tables=tables)


def page_words(pdf_page: pymupdf.Page) -> Counter[str]:
    return Counter(w[4] for w in pdf_page.get_text("words"))  # type: ignore[union-attr]


def segment_words(segments: list[Segment]) -> Counter[str]:
    return Counter(word for s in segments for word in s.text.split())


def iou(a: BBox, b: BBox) -> float:
    inter = a.intersection_area(b)
    return inter / (a.area + b.area - inter)


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pages(pdf: list[pymupdf.Page]) -> list[Page]:
    return [to_page(p) for p in pdf]


@pytest.fixture(scope="module")
def detector() -> LayoutModel:
    return LayoutModel(threads=2)


@pytest.fixture(scope="module")
def regions(pages: list[Page], detector: LayoutModel) -> list[list[Region]]:
    return [detector.detect(p.image) for p in pages]


@pytest.fixture(scope="module")
def style(pages: list[Page]) -> DocumentStyle:
    return document_style(pages)


@pytest.fixture(scope="module")
def segmented(
    pages: list[Page], regions: list[list[Region]], style: DocumentStyle
) -> list[list[Segment]]:
    return [
        build_segments(p, r, strategy="LayoutAnalysis", id_prefix=f"t-p{p.number}", style=style)
        for p, r in zip(pages, regions, strict=True)
    ]


def texts_of(segments: list[Segment], seg_type: SegmentType) -> list[str]:
    return [s.text for s in segments if s.segment_type == seg_type]


# --- the detector -------------------------------------------------------------------------


def test_detector_finds_title_text_and_table(regions: list[list[Region]]) -> None:
    found = regions[0]
    table = max((r for r in found if r.segment_type == ST.TABLE), key=lambda r: r.confidence)
    assert iou(table.bbox, _box(TABLE_RECT)) > 0.5
    title_box = _box((72, 70, 350, 96))
    assert any(r.segment_type == ST.TITLE and iou(r.bbox, title_box) > 0.5 for r in found), found
    paragraph_box = _box((72, 133, 520, 160))
    assert any(r.segment_type == ST.TEXT and iou(r.bbox, paragraph_box) > 0.5 for r in found)
    picture = [r for r in found if r.segment_type == ST.PICTURE]
    assert picture and iou(picture[0].bbox, _box(PICTURE_RECT)) > 0.5
    assert {ST.PAGE_HEADER, ST.PAGE_FOOTER} <= {r.segment_type for r in found}
    assert all(0 < r.confidence <= 1 for r in found)


def test_detector_input_is_rapid_layouts_own(pages: list[Page]) -> None:
    """Our float32 preprocessing feeds the network what rapid-layout's does."""
    from rapid_layout.model_handler.pp.pre_process import PPPreProcess

    from visionserve.models.documents.layout import _INPUT_SIZE, _network_input

    theirs = PPPreProcess(img_size=_INPUT_SIZE)
    for rgb in [pages[0].image, np.random.default_rng(0).integers(0, 256, (900, 700, 3), np.uint8)]:
        ours = _network_input(rgb)
        assert ours.dtype == np.float32 and ours.flags.c_contiguous
        np.testing.assert_allclose(ours, theirs(np.ascontiguousarray(rgb[..., ::-1])), atol=1e-5)


def test_detector_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WeightError, match=r"layout_cdla\.onnx not found"):
        LayoutModel(tmp_path / "layout_cdla.onnx")


# --- types and text -----------------------------------------------------------------------


def test_all_types_found(segmented: list[list[Segment]]) -> None:
    found = {s.segment_type for page in segmented for s in page}
    expected = set(SegmentType) - {ST.PAGE}
    assert found == expected, expected - found


def test_page_one_segments(segmented: list[list[Segment]]) -> None:
    segs = segmented[0]
    assert texts_of(segs, ST.TITLE) == [TITLE]
    assert texts_of(segs, ST.SECTION_HEADER) == ["Introduction", "Findings"]
    assert texts_of(segs, ST.LIST_ITEM) == [
        "- Layout regions are detected on every page.",
        "- Tables keep their rows and cells, and long items wrap onto a second line.",
        "- Pictures are cropped for storage.",
    ]
    assert texts_of(segs, ST.CAPTION) == ["Figure 1: A generated gradient picture."]
    assert texts_of(segs, ST.FORMULA) == [FORMULA]
    assert texts_of(segs, ST.FOOTNOTE) == [
        "1 Footnote: all numbers are synthetic and for testing only."
    ]
    assert texts_of(segs, ST.PAGE_HEADER) == ["ACME Research - Internal Report"]
    assert texts_of(segs, ST.PAGE_FOOTER) == ["Page 1 of 2"]
    (picture,) = [s for s in segs if s.segment_type == ST.PICTURE]
    assert iou(picture.bbox, _box(PICTURE_RECT)) > 0.8
    order = [s.segment_type for s in segs]
    assert order[0] == ST.PAGE_HEADER and order[-1] == ST.PAGE_FOOTER
    assert order.index(ST.TITLE) < order.index(ST.TABLE) < order.index(ST.PICTURE)
    assert order.index(ST.PICTURE) + 1 == order.index(ST.CAPTION)


def test_no_word_is_lost(pdf: list[pymupdf.Page], segmented: list[list[Segment]]) -> None:
    for pdf_page, segs in zip(pdf, segmented, strict=True):
        assert segment_words(segs) == page_words(pdf_page)


def test_segment_fields(segmented: list[list[Segment]], pages: list[Page]) -> None:
    ids = [s.segment_id for page in segmented for s in page]
    assert len(set(ids)) == len(ids) and ids[0] == "t-p1-0"
    for page, segs in zip(pages, segmented, strict=True):
        for s in segs:
            assert s.page_number == page.number
            assert (s.page_width, s.page_height) == (page.width, page.height)
            assert s.content == s.text
            assert s.confidence is not None and 0 < s.confidence <= 1
            assert s.bbox.width > 0 and s.bbox.height > 0


def test_html_and_markdown(segmented: list[list[Segment]]) -> None:
    by_type: dict[SegmentType, Segment] = {}
    for seg in segmented[0]:
        by_type.setdefault(seg.segment_type, seg)
    assert by_type[ST.TITLE].html == f"<h1>{TITLE}</h1>"
    assert by_type[ST.TITLE].markdown == f"# {TITLE}"
    header = by_type[ST.SECTION_HEADER]
    assert (header.html, header.markdown) == ("<h2>Introduction</h2>", "## Introduction")
    item = next(s for s in segmented[0] if s.segment_type == ST.LIST_ITEM)
    assert item.html == "<ul><li>Layout regions are detected on every page.</li></ul>"
    assert item.markdown == "- Layout regions are detected on every page."
    formula = by_type[ST.FORMULA]
    assert formula.html == f'<span class="formula">{FORMULA}</span>'
    assert formula.markdown == f"`{FORMULA}`"
    caption = by_type[ST.CAPTION]
    assert caption.html == "<p>Figure 1: A generated gradient picture.</p>"
    assert by_type[ST.PICTURE].html.startswith("<img")


def test_table_cells(segmented: list[list[Segment]]) -> None:
    (table,) = [s for s in segmented[0] if s.segment_type == ST.TABLE]
    assert table.html == (
        "<table>"
        "<tr><td>Region</td><td>Count</td><td>Score</td></tr>"
        "<tr><td>Heading</td><td>1</td><td>0.98</td></tr>"
        "<tr><td>Grid</td><td>2</td><td>&lt;5 &amp; more</td></tr>"
        "</table>"
    )
    assert table.markdown.splitlines() == [
        "| Region | Count | Score |",
        "| --- | --- | --- |",
        "| Heading | 1 | 0.98 |",
        "| Grid | 2 | <5 & more |",
    ]
    assert table.confidence == 1.0
    assert iou(table.bbox, _box(TABLE_RECT)) > 0.9


# --- reading order ------------------------------------------------------------------------


def test_two_column_reading_order(segmented: list[list[Segment]]) -> None:
    body = [s for s in segmented[1] if s.segment_type == ST.TEXT]
    starts = [" ".join(s.text.split()[:3]) for s in body]
    assert starts == [f"{side} paragraph {k}." for side in ("Left", "Right") for k in (1, 2, 3)]
    types = [s.segment_type for s in segmented[1]]
    assert types[:2] == [ST.PAGE_HEADER, ST.SECTION_HEADER] and types[-1] == ST.PAGE_FOOTER


def test_full_width_block_splits_the_columns(pages: list[Page], style: DocumentStyle) -> None:
    """A full-width title between two-column parts: upper columns, title, lower columns."""
    doc = pymupdf.open()
    page = doc.new_page(width=W, height=H)
    for top, tag in ((80, "upper"), (400, "lower")):
        for left, side in ((72, "left"), (320, "right")):
            rect = pymupdf.Rect(left, top, left + 220, top + 200)
            page.insert_textbox(rect, f"{tag} {side} " + " ".join(GREEK * 3), fontsize=10)
    page.insert_text((150, 320), "A Centered Full Width Heading Line Here", fontsize=18)
    segs = build_segments(to_page(page), None, id_prefix="x")
    starts = [" ".join(s.text.split()[:2]) for s in segs]
    assert starts[:2] == ["upper left", "upper right"]
    assert segs[2].segment_type == ST.TITLE  # the largest type on page 1
    assert starts[3:] == ["lower left", "lower right"]


# --- strategies and options ---------------------------------------------------------------


def test_page_strategy(pdf: list[pymupdf.Page], pages: list[Page], style: DocumentStyle) -> None:
    for pdf_page, page in zip(pdf, pages, strict=True):
        segs = build_segments(page, None, strategy="Page", id_prefix="pg", style=style)
        assert len(segs) == 1
        (seg,) = segs
        assert seg.segment_type == ST.PAGE
        assert seg.bbox == BBox(0, 0, page.width, page.height)
        assert Counter(seg.text.split()) == page_words(pdf_page)
        assert "<table>" in seg.html or page.number == 2


def test_unknown_strategy(pages: list[Page]) -> None:
    with pytest.raises(BadRequest):
        build_segments(pages[0], None, strategy="Paragraph", id_prefix="x")  # type: ignore[arg-type]


def test_ignore_headers_and_footers(segmented: list[list[Segment]]) -> None:
    for segs in segmented:
        kept = drop_headers_footers(segs)
        assert len(kept) == len(segs) - 2
        assert not {ST.PAGE_HEADER, ST.PAGE_FOOTER} & {s.segment_type for s in kept}
        assert "ACME" not in " ".join(s.text for s in kept)


def test_without_detector_structure_still_types_everything(
    pdf: list[pymupdf.Page], pages: list[Page], style: DocumentStyle
) -> None:
    segs = build_segments(pages[0], None, id_prefix="n", style=style)
    assert {s.segment_type for s in segs} == set(SegmentType) - {ST.PAGE}
    (picture,) = [s for s in segs if s.segment_type == ST.PICTURE]  # from the ink, not a model
    assert iou(picture.bbox, _box(PICTURE_RECT)) > 0.8
    assert segment_words(segs) == page_words(pdf[0])


def test_single_page_without_style(pdf: list[pymupdf.Page], pages: list[Page]) -> None:
    """No document style: the page number still marks the footer; no text is lost."""
    segs = build_segments(pages[0], None, id_prefix="s")
    assert texts_of(segs, ST.PAGE_FOOTER) == ["Page 1 of 2"]
    assert texts_of(segs, ST.TITLE) == [TITLE]
    assert segment_words(segs) == page_words(pdf[0])


def test_scanned_page_uses_ocr_words_in_regions(
    pdf: list[pymupdf.Page], detector: LayoutModel
) -> None:
    for pdf_page in pdf:
        page = to_page(pdf_page, text_layer=False)
        segs = build_segments(page, detector.detect(page.image), id_prefix="o")
        assert segment_words(segs) == page_words(pdf_page)
        assert sum(len(s.ocr) for s in segs) == len(page.words)
        types = {s.segment_type for s in segs}
        if page.number == 1:
            assert {ST.TITLE, ST.TABLE, ST.PICTURE, ST.CAPTION, ST.LIST_ITEM} <= types
            (table,) = [s for s in segs if s.segment_type == ST.TABLE]
            assert table.html.count("<tr>") == 3
            assert "<td>0.98</td>" in table.html
        else:
            starts = [s.text.split()[0] for s in segs if s.segment_type == ST.TEXT]
            assert starts == ["Left"] * 3 + ["Right"] * 3


def test_segment_processing(segmented: list[list[Segment]]) -> None:
    segs = segmented[0]
    config = {
        "text": {"strategy": "Ignore", "embed_sources": ["Markdown", "Content"]},
        "Table": {"crop_image": "All", "html": "LLM", "unknown_option": 1},
        "section_header": {"format": "Html"},
        "not_a_type": {"x": 1},
    }
    plans: dict[SegmentType, SegmentPlan] = {}
    for plan in apply_segment_processing(segs, config):
        plans.setdefault(plan.segment.segment_type, plan)
    text = plans[ST.TEXT]
    assert text.embed == text.segment.content and not text.crop
    assert plans[ST.TABLE].crop and plans[ST.TABLE].needs_llm
    assert plans[ST.TABLE].embed == plans[ST.TABLE].segment.html
    assert plans[ST.PICTURE].crop  # pictures are cropped by default
    assert plans[ST.SECTION_HEADER].embed == "<h2>Introduction</h2>"
    assert plans[ST.TITLE].embed == f"# {TITLE}" and not plans[ST.TITLE].crop
    assert len(apply_segment_processing(segs, None)) == len(segs)
    with pytest.raises(BadRequest):
        apply_segment_processing(segs, {"table": {"crop_image": "Sometimes"}})


def test_crop_and_attach_image(pages: list[Page], segmented: list[list[Segment]]) -> None:
    (picture,) = [s for s in segmented[0] if s.segment_type == ST.PICTURE]
    image = crop(pages[0], picture.bbox, pad=0)
    assert abs(image.width - picture.bbox.width) <= 2
    assert abs(image.height - picture.bbox.height) <= 2
    # The gradient is colourful; paper is white.
    assert np.asarray(image).std() > 20
    attach_image(picture, "https://blobs.example/p1.png")
    assert picture.html == '<img src="https://blobs.example/p1.png" alt="" />'
    assert picture.markdown == "![](https://blobs.example/p1.png)"
    edge = crop(pages[0], BBox(-50, -50, 10, 10))
    assert edge.size[0] >= 1 and edge.size[1] >= 1


def test_numbered_and_lettered_items_and_wrapped_lines() -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=W, height=H)
    page.insert_textbox(pymupdf.Rect(72, 60, 540, 100), "Steps " * 30, fontsize=10)
    page.insert_text((72, 120), "1. First step of the procedure.", fontsize=10)
    page.insert_text((72, 134), "2. Second step, which is long and", fontsize=10)
    page.insert_text((84, 146), "wraps onto another line.", fontsize=10)
    page.insert_text((72, 160), "a) A lettered item.", fontsize=10)
    page.insert_text((90, 186), "An indented paragraph starts here and it", fontsize=10)
    page.insert_text((72, 198), "continues at the margin on its second line.", fontsize=10)
    segs = build_segments(to_page(page), None, id_prefix="l")
    assert texts_of(segs, ST.LIST_ITEM) == [
        "1. First step of the procedure.",
        "2. Second step, which is long and wraps onto another line.",
        "a) A lettered item.",
    ]
    assert texts_of(segs, ST.TEXT)[-1] == (
        "An indented paragraph starts here and it continues at the margin on its second line."
    )
    item = next(s for s in segs if s.segment_type == ST.LIST_ITEM)
    assert item.html == "<ul><li>1. First step of the procedure.</li></ul>"
    assert item.markdown == "- 1\\. First step of the procedure."
