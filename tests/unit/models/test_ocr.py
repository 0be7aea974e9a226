"""OCR engines and strategies, measured on the generated report page.

The "scanned" page is the digital report rendered at 300 DPI, blurred slightly
and given sensor noise; accuracy is the character error rate (edit distance over
the normalised text) against the text the report was written with.
"""

from __future__ import annotations

import io
import time
import unicodedata
from dataclasses import replace

import numpy as np
import pymupdf
import pytest
from PIL import Image, ImageDraw, ImageFilter

from tests.unit.models.test_doc_source import (
    A4,
    HEADING,
    TABLE,
    load_one,
    report_lines,
    report_page,
    report_pdf,
)
from visionserve.errors import UnknownModel
from visionserve.models.documents.ocr import (
    OCR_ENGINES,
    OcrEngine,
    OcrUnavailable,
    RapidOcr,
    TesseractOcr,
    erase_rules,
    get_ocr_engine,
    ocr_page,
    parse_tsv,
    spans_to_words,
    text_layer_ok,
)
from visionserve.models.documents.types import BBox, Page, TextSpan, Word

# --- measuring -------------------------------------------------------------------------


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions), two rows of memory."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def cer(got: str, truth: str) -> float:
    got, truth = normalise(got), normalise(truth)
    return edit_distance(got, truth) / max(1, len(truth))


def reading_text(words: list[Word]) -> str:
    """Words (or lines) in reading order: grouped into lines, then left to right.

    A word joins the current line when its vertical centre lies within the line's
    band, so a dash or a descender does not start a line of its own.
    """
    lines: list[list[Word]] = []
    for word in sorted(words, key=lambda w: w.bbox.top + w.bbox.height / 2):
        centre = word.bbox.top + word.bbox.height / 2
        if lines:
            top = min(w.bbox.top for w in lines[-1])
            bottom = max(w.bbox.bottom for w in lines[-1])
            if top <= centre <= bottom:
                lines[-1].append(word)
                continue
        lines.append([word])
    return "\n".join(
        " ".join(w.text for w in sorted(ln, key=lambda w: w.bbox.left)) for ln in lines
    )


TRUTH = " ".join(report_lines())


def test_measuring_tools() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == edit_distance("abc", "") == 3
    assert cer("Hello  world", "Hello world") == 0
    assert cer("Hel1o world", "Hello world") == pytest.approx(1 / 11)
    words = [
        Word(BBox(200, 12, 40, 10), "b"),
        Word(BBox(10, 10, 40, 12), "a"),
        Word(BBox(10, 40, 40, 12), "c"),
    ]
    assert reading_text(words) == "a b\nc"


# --- pages -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digital() -> Page:
    return load_one(report_pdf(), high_resolution=True)


@pytest.fixture(scope="module")
def scanned(digital: Page) -> Page:
    """The report as a scanner would deliver it: no text layer, a little blur and noise."""
    blurred = Image.fromarray(digital.image).filter(ImageFilter.GaussianBlur(radius=1.0))
    noise = np.random.default_rng(42).normal(0, 12, digital.image.shape)
    pixels = np.clip(np.asarray(blurred, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return Page(number=1, image=pixels, dpi=300)


def test_scanned_page_is_really_degraded(digital: Page, scanned: Page) -> None:
    assert scanned.spans is None and not scanned.has_text_layer
    diff = np.abs(scanned.image.astype(int) - digital.image)
    assert diff.mean() > 5  # noise everywhere, not a copy


# --- engines ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tesseract() -> TesseractOcr:
    return TesseractOcr()


@pytest.fixture(scope="module")
def rapidocr() -> RapidOcr:
    return RapidOcr(threads=2)


def test_tesseract_reads_the_scan(tesseract: TesseractOcr, scanned: Page) -> None:
    start = time.perf_counter()
    words = tesseract.recognize(scanned.image)
    elapsed = time.perf_counter() - start
    error = cer(reading_text(words), TRUTH)
    print(f"tesseract: CER {error:.2%}, {len(words)} words, {elapsed:.2f} s per 300 DPI page")
    assert error <= 0.03
    assert all(0.0 <= w.confidence <= 1.0 for w in words)
    assert all(
        w.bbox.left >= 0 and w.bbox.right <= scanned.width and w.bbox.bottom <= scanned.height
        for w in words
    )
    # The ruled table is read too (tesseract alone skips text inside ruled cells).
    assert {"Widget,", "Gadget", "Sprocket", "$12.00"} <= {w.text for w in words}


def test_tesseract_boxes_sit_on_the_text(tesseract: TesseractOcr, digital: Page) -> None:
    words = tesseract.recognize(digital.image)
    heading = next(s for s in digital.spans or [] if s.text == HEADING)
    found = [w for w in words if w.bbox.intersection_area(heading.bbox) > 0]
    assert [w.text for w in found] == HEADING.split()
    for word in found:
        overlap = word.bbox.intersection_area(heading.bbox) / word.bbox.area
        assert overlap > 0.9


@pytest.mark.slow
def test_rapidocr_reads_the_scan(rapidocr: RapidOcr, scanned: Page) -> None:
    rapidocr.recognize(scanned.image[:400])  # load the models outside the timing
    start = time.perf_counter()
    lines = rapidocr.recognize(scanned.image)
    elapsed = time.perf_counter() - start
    error = cer(reading_text(lines), TRUTH)
    print(f"rapidocr: CER {error:.2%}, {len(lines)} lines, {elapsed:.2f} s per 300 DPI page")
    assert error <= 0.10
    assert all(0.0 <= w.confidence <= 1.0 for w in lines)
    # Lines, not words: the heading is one entry.
    assert any(normalise(w.text) == HEADING for w in lines)


@pytest.mark.slow
def test_rapidocr_reads_long_lines_of_a_clean_page(rapidocr: RapidOcr, digital: Page) -> None:
    # With RapidOCR's line-orientation classifier on, the 1800-pixel first line of
    # this page is flipped by 180° and read as "T i o ile" (CER 17%).
    lines = rapidocr.recognize(digital.image)
    assert cer(reading_text(lines), TRUTH) <= 0.01
    assert all(isinstance(v, float) for w in lines for v in vars(w.bbox).values())


def test_engines_read_an_empty_page(tesseract: TesseractOcr) -> None:
    blank = np.full((200, 300, 3), 255, np.uint8)
    assert tesseract.recognize(blank) == []
    assert tesseract.recognize(blank[..., 0]) == []  # grey input too


def test_parse_tsv() -> None:
    tsv = (
        "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
        "1\t1\t0\t0\t0\t0\t0\t0\t640\t480\t-1\t\n"
        "4\t1\t1\t1\t1\t0\t10\t20\t300\t30\t-1\t\n"
        "5\t1\t1\t1\t1\t1\t10\t20\t120\t30\t96.5\tHello\n"
        "5\t1\t1\t1\t1\t2\t140\t21\t170\t29\t88\tworld!\n"
        "5\t1\t1\t1\t1\t3\t320\t21\t5\t29\t95\t \n"
    )
    assert parse_tsv(tsv) == [
        Word(BBox(10, 20, 120, 30), "Hello", 0.965),
        Word(BBox(140, 21, 170, 29), "world!", 0.88),
    ]


def test_erase_rules_keeps_the_letters() -> None:
    img = Image.new("L", (2480, 800), 255)  # A4 width at 300 DPI: rules >= 99 px long
    draw = ImageDraw.Draw(img)
    draw.rectangle((40, 40, 2440, 760), outline=0, width=4)  # a 1 pt frame
    draw.line((40, 400, 2440, 400), fill=0, width=6)  # a 1.5 pt rule
    draw.rectangle((200, 100, 211, 210), fill=0)  # the stem of a 36 pt capital
    draw.rectangle((400, 100, 1200, 130), fill=0)  # a heavy black bar
    draw.rectangle((300, 450, 310, 490), fill=0)  # a body-text stem
    grey = np.asarray(img)
    out = erase_rules(grey)
    assert (out[38:46, 100:2400] == 255).all() and (out[395:406, 100:2400] == 255).all()
    assert (out[100:700, 36:48] == 255).all()
    for y0, y1, x0, x1 in [(100, 210, 200, 211), (100, 130, 400, 1200), (450, 490, 300, 310)]:
        assert (out[y0 : y1 + 1, x0 : x1 + 1] == 0).all()
    assert grey[400, 300] == 0  # the input is left alone


def test_missing_tesseract_binary() -> None:
    with pytest.raises(OcrUnavailable, match="install tesseract-ocr") as exc:
        TesseractOcr(binary="tesseract-that-is-not-installed")
    assert exc.value.status == 503


def test_missing_tesseract_language(tesseract: TesseractOcr) -> None:
    with pytest.raises(OcrUnavailable, match="tesseract-ocr-xyz"):
        TesseractOcr(lang="xyz").recognize(np.full((50, 50), 255, np.uint8))


@pytest.mark.parametrize("name", sorted(OCR_ENGINES))
def test_registry(name: str) -> None:
    engine = get_ocr_engine(name)
    assert engine.name == name
    assert isinstance(engine, OcrEngine)


def test_unknown_engine() -> None:
    with pytest.raises(UnknownModel) as exc:
        get_ocr_engine("easyocr")
    assert exc.value.status == 400
    assert exc.value.details["valid"] == ["rapidocr", "tesseract"]


# --- strategies ------------------------------------------------------------------------


class SpyEngine:
    """Records its calls and answers with fixed words."""

    name = "spy"

    def __init__(self, words: list[Word] | None = None) -> None:
        self.calls = 0
        self.words = words or [Word(BBox(0, 0, 10, 10), "ocr", 0.5)]

    def recognize(self, image: np.ndarray) -> list[Word]:
        self.calls += 1
        return list(self.words)


def test_auto_uses_the_text_layer_of_a_digital_page(digital: Page) -> None:
    spy = SpyEngine()
    page = ocr_page(digital, spy, "Auto")
    assert spy.calls == 0
    assert page is not digital and digital.words == []  # the input is not modified
    assert cer(reading_text(page.words), TRUTH) == 0
    assert {w.confidence for w in page.words} == {1.0}
    # Word boxes stay inside their span.
    heading = next(s for s in digital.spans or [] if s.text == HEADING)
    annual = next(w for w in page.words if w.text == "Annual")
    assert annual.bbox.intersection_area(heading.bbox) == pytest.approx(annual.bbox.area)
    assert annual.bbox.width < heading.bbox.width / 2


def test_auto_ocrs_a_scanned_page(scanned: Page) -> None:
    spy = SpyEngine()
    page = ocr_page(scanned, spy, "Auto")
    assert spy.calls == 1 and [w.text for w in page.words] == ["ocr"]


def test_all_ocrs_even_a_digital_page(digital: Page) -> None:
    spy = SpyEngine()
    page = ocr_page(digital, spy, "All")
    assert spy.calls == 1 and [w.text for w in page.words] == ["ocr"]


@pytest.mark.parametrize(
    "garbage",
    ["\ufffd" * 40 + " total", "(cid:12)(cid:7)(cid:44) " * 5 + "ok", "\ue000\ue001\ue002" * 10],
)
def test_auto_ocrs_a_garbage_text_layer(digital: Page, garbage: str) -> None:
    span = TextSpan(BBox(100, 100, 800, 40), garbage, 20.0)
    page = replace(digital, spans=[span])
    assert page.has_text_layer and not text_layer_ok(page)
    spy = SpyEngine()
    ocr_page(page, spy, "Auto")
    assert spy.calls == 1


def test_auto_ocrs_a_picture_on_a_digital_page(tesseract: TesseractOcr) -> None:
    # A digital page with a screenshot pasted in: the layer has the page's text,
    # only OCR has the picture's.
    picture = load_one(_words_pdf("Scanned insert text"), high_resolution=True).image
    doc = pymupdf.open()
    page = report_page(doc)
    buf = Image.fromarray(picture[:300, :1400])
    png = _png(buf)
    page.insert_image(pymupdf.Rect(72, 500, 72 + 1400 * 72 / 300, 500 + 300 * 72 / 300), stream=png)
    composed = load_one(doc.tobytes(), high_resolution=True)
    assert text_layer_ok(composed)
    result = ocr_page(composed, tesseract, "Auto")
    texts = [w.text for w in result.words]
    assert {"Scanned", "insert"} <= set(texts)  # from OCR
    assert texts.count("Annual") == 1  # from the layer, not twice
    # A spy shows which OCR words are kept: only those off the text layer.
    inside = next(s for s in composed.spans or [] if s.text == HEADING).bbox
    outside = BBox(200, 2200, 200, 40)
    spy = SpyEngine([Word(inside, "dup", 0.9), Word(outside, "kept", 0.9)])
    result = ocr_page(composed, spy, "Auto")
    assert spy.calls == 1
    texts = [w.text for w in result.words]
    assert "kept" in texts and "dup" not in texts


def test_auto_does_not_ocr_a_plain_digital_page_with_a_table(digital: Page) -> None:
    assert digital.tables and digital.tables[0].rows == TABLE
    spy = SpyEngine()
    ocr_page(digital, spy, "Auto")
    assert spy.calls == 0


def test_failed_pages_pass_through(digital: Page) -> None:
    failed = replace(digital, error="Page 1 could not be rendered")
    spy = SpyEngine()
    assert ocr_page(failed, spy, "All") is failed and spy.calls == 0


def test_unknown_strategy(digital: Page) -> None:
    with pytest.raises(ValueError, match="ocr_strategy"):
        ocr_page(digital, SpyEngine(), "Sometimes")


def test_spans_to_words_splits_on_whitespace() -> None:
    span = TextSpan(BBox(0, 10, 110, 20), "ab  cdefgh i", 12.0)  # 12 characters, 110 px
    words = spans_to_words([span])
    assert [w.text for w in words] == ["ab", "cdefgh", "i"]
    step = 110 / 12
    assert words[1].bbox.left == pytest.approx(4 * step)
    assert words[1].bbox.width == pytest.approx(6 * step)
    assert all(w.bbox.top == 10 and w.bbox.height == 20 for w in words)


# --- helpers ---------------------------------------------------------------------------


def _words_pdf(text: str) -> bytes:
    doc = pymupdf.open()
    page = doc.new_page(width=A4.width, height=A4.height)
    page.insert_text((20, 40), text, fontsize=20, fontname="tiro")
    return doc.tobytes()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
