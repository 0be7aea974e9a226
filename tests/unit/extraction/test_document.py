"""Uploads as pages of words: text layers, images, bad files, skewed scans."""

from __future__ import annotations

import io

import numpy as np
import pymupdf
import pytest
from PIL import Image, ImageDraw

from tests.extract_fixtures import generate, rasterise
from visionserve.errors import BadRequest, InvalidImage
from visionserve.models.documents.types import BBox, Word
from visionserve.models.extraction.document import load_pages, ocr_pages, skew_angle


def _pdf(pages: int = 1, text: str = "Invoice number INV-1 total 12.50 due 2024-01-31") -> bytes:
    doc = pymupdf.open()
    for _ in range(pages):
        doc.new_page().insert_text((72, 72), text)
    data: bytes = doc.tobytes()
    return data


def test_pdf_text_layer_gives_words_in_page_pixels() -> None:
    pages = load_pages(_pdf(2), max_pages=5)
    assert [p.number for p in pages] == [1, 2]
    page = pages[0]
    assert page.from_text_layer
    assert [w.text for w in page.words][:3] == ["Invoice", "number", "INV-1"]
    # 72 pt at 150 DPI is 150 px: the first word starts there.
    assert page.words[0].bbox.left == pytest.approx(150, abs=2)
    assert page.image is not None and page.image.shape[1] == page.width


def test_an_image_has_no_words_until_ocr() -> None:
    doc = generate("classic", "en", "rendered", seed=1)
    pages = load_pages(doc.data, max_pages=5)
    assert len(pages) == 1 and pages[0].words == [] and pages[0].image is not None

    class FakeOcr:
        name = "fake"

        def recognize(self, image: np.ndarray) -> list[Word]:
            return [Word(BBox(1, 2, 3, 4), "hello", 0.9)]

    done = ocr_pages(pages, FakeOcr())
    assert [w.text for w in done[0].words] == ["hello"]
    assert pages[0].words == []  # the input is not modified


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", b"%PDF-1.7\n garbage", b"\x89PNG\r\n\x1a\n\x00\x00truncated"],
)
def test_unreadable_input_is_invalid_image(data: bytes) -> None:
    with pytest.raises(InvalidImage) as info:
        load_pages(data, max_pages=5)
    assert info.value.code == "invalid_image" and info.value.status == 400


def test_truncated_pdf_is_invalid_image() -> None:
    data = _pdf(3)
    with pytest.raises(InvalidImage):
        load_pages(data[: len(data) // 2], max_pages=5)


def test_password_protected_pdf() -> None:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret")
    data = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="pw", owner_pw="pw")
    with pytest.raises(BadRequest) as info:
        load_pages(data, max_pages=5)
    assert info.value.code == "encrypted_pdf"


def test_too_many_pages() -> None:
    with pytest.raises(BadRequest) as info:
        load_pages(_pdf(4), max_pages=3)
    assert info.value.code == "too_many_pages"


def test_tiff_frames_are_pages() -> None:
    frames = [Image.new("RGB", (200, 100), c) for c in ("white", "grey")]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    assert [p.number for p in load_pages(buf.getvalue(), max_pages=5)] == [1, 2]


@pytest.mark.parametrize("angle", [-2.0, -0.8, 1.2, 2.0])
def test_skew_of_a_rotated_page_is_measured(angle: float) -> None:
    img = Image.new("L", (1200, 1600), 255)
    draw = ImageDraw.Draw(img)
    for row in range(60, 1500, 40):
        draw.rectangle((100, row, 1100 - (row % 300), row + 14), fill=0)  # text-like rows
    rotated = np.asarray(img.rotate(angle, fillcolor=255, expand=False))
    # Rotating back by the measured angle levels the page.
    assert skew_angle(rotated) == pytest.approx(-angle, abs=0.25)


def test_a_rendered_generated_page_is_level() -> None:
    image = np.asarray(rasterise(generate("modern", "de").data, 100))
    assert abs(skew_angle(image)) < 0.15
