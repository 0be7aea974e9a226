"""The local extractor end to end on generated documents, and its parts on made-up pages."""

from __future__ import annotations

from typing import Any

import pytest

from tests.extract_fixtures import INVOICE_SCHEMA, TUNING_FAMILIES, generate
from visionserve.models.documents.ocr import get_ocr_engine
from visionserve.models.documents.types import BBox, Word
from visionserve.models.extraction.document import DocPage, load_pages, ocr_pages
from visionserve.models.extraction.engine import LocalExtractor, locate
from visionserve.models.extraction.schema import ExtractionSchema

SCHEMA = ExtractionSchema.parse(INVOICE_SCHEMA)
SCALARS = [k for k in INVOICE_SCHEMA if k != "line_items"]


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float) and isinstance(got, int | float):
        return abs(got - want) < 0.005
    if isinstance(want, str) and isinstance(got, str):
        return " ".join(got.split()).casefold() == " ".join(want.split()).casefold()
    return bool(got == want)


def _page(lines: list[tuple[float, float, str]], width: float = 1240) -> DocPage:
    """A page of words at (x, y) in pixels, 20 px high, 11 px per character."""
    words = []
    for x, y, text in lines:
        for part in text.split(" "):
            words.append(Word(BBox(x, y, 11 * len(part), 20), part, 0.99))
            x += 11 * (len(part) + 1)
    return DocPage(number=1, width=width, height=1754, words=words)


@pytest.mark.parametrize("family", TUNING_FAMILIES)
@pytest.mark.parametrize("language", ["en", "de", "fr", "nl", "es", "it"])
def test_generated_digital_documents(family: str, language: str) -> None:
    doc = generate(family, language, "digital", seed=7)  # type: ignore[arg-type]
    pages = load_pages(doc.data, max_pages=5)
    ex = LocalExtractor().extract(pages, SCHEMA)
    SCHEMA.validate_result(ex.result)
    wrong = [k for k in SCALARS if not _same(ex.result[k], doc.truth[k])]
    assert len(wrong) <= 1, {k: (ex.result[k], doc.truth[k]) for k in wrong}
    got, want = ex.result["line_items"], doc.truth["line_items"]
    assert len(got) == len(want)
    cells = [(g[k], w[k]) for g, w in zip(got, want, strict=True) for k in w]
    assert sum(_same(g, w) for g, w in cells) >= 0.9 * len(cells), cells
    # Every found leaf says where it came from.
    for key in SCALARS:
        meta = ex.field_metadata[key]
        if ex.result[key] is None:
            assert meta == {"confidence": 0.0, "page": None, "bbox": None, "source_text": None}
        else:
            assert meta["page"] == 1 and len(meta["bbox"]) == 4 and meta["source_text"]
            assert 0 < meta["confidence"] <= 1
    assert 0 < ex.confidence <= 1


def test_a_receipt_has_no_customer_and_no_due_date() -> None:
    doc = generate("receipt", "de", "digital", seed=3)
    ex = LocalExtractor().extract(load_pages(doc.data, max_pages=5), SCHEMA)
    assert ex.result["customer"] is None and ex.result["due_date"] is None
    assert ex.field_metadata["customer"]["confidence"] == 0.0
    assert _same(ex.result["total"], doc.truth["total"])
    # A missing field counts 0 in the overall confidence.
    leaves = [m["confidence"] for k, m in ex.field_metadata.items() if k != "line_items"]
    leaves += [m["confidence"] for row in ex.field_metadata["line_items"] for m in row.values()]
    assert ex.confidence == pytest.approx(sum(leaves) / len(leaves), abs=0.002)


def test_fields_not_on_the_document_are_null_never_invented() -> None:
    schema = ExtractionSchema.parse(
        {"purchase_order": "string", "iban": "string", "delivery_date": "date", "total": "number"}
    )
    doc = generate("classic", "en", "digital", seed=2)
    ex = LocalExtractor().extract(load_pages(doc.data, max_pages=5), schema)
    assert ex.result["purchase_order"] is None
    assert ex.result["iban"] is None
    assert ex.result["delivery_date"] is None
    assert _same(ex.result["total"], doc.truth["total"])


def test_empty_page_gives_an_empty_result() -> None:
    ex = LocalExtractor().extract([_page([])], SCHEMA)
    assert ex.result == SCHEMA.empty_result()
    assert ex.confidence == 0.0


def test_label_right_label_above_and_inline() -> None:
    page = _page(
        [
            (100, 100, "Rechnungsnummer:"),
            (400, 100, "RE-77"),  # label, value to its right
            (100, 200, "Rechnungsdatum"),
            (100, 225, "05.03.2024"),  # label above value
            (100, 300, "Fällig am: 19.03.2024"),  # inline
            (100, 400, "Gesamtbetrag"),
            (900, 400, "1.190,00 €"),
        ]
    )
    schema = ExtractionSchema.parse(
        {"invoice_number": "string", "invoice_date": "date", "due_date": "date", "total": "number"}
    )
    ex = LocalExtractor().extract([page], schema)
    assert ex.result == {
        "invoice_number": "RE-77",
        "invoice_date": "2024-03-05",
        "due_date": "2024-03-19",
        "total": 1190.0,
    }
    assert ex.field_metadata["total"]["bbox"][0] == 900
    assert ex.field_metadata["invoice_date"]["source_text"] == "05.03.2024"


def _totals_page(total: str) -> DocPage:
    return _page(
        [
            (100, 100, "Description"),
            (700, 100, "Qty"),
            (850, 100, "Price"),
            (1050, 100, "Amount"),
            (100, 140, "Widget large"),
            (700, 140, "2"),
            (850, 140, "10.00"),
            (1050, 140, "20.00"),
            (100, 170, "Gadget"),
            (700, 170, "1"),
            (850, 170, "5.00"),
            (1050, 170, "5.00"),
            (100, 195, "with a long wrapped name"),
            (800, 260, "Subtotal"),
            (1050, 260, "25.00"),
            (800, 290, "Tax"),
            (1050, 290, "2.50"),
            (800, 320, "Total"),
            (1050, 320, total),
        ]
    )


def test_line_items_with_a_wrapped_description_stop_at_the_sums() -> None:
    ex = LocalExtractor().extract([_totals_page("27.50")], SCHEMA)
    assert ex.result["line_items"] == [
        {"description": "Widget large", "quantity": 2, "unit_price": 10.0, "amount": 20.0},
        {
            "description": "Gadget with a long wrapped name",
            "quantity": 1,
            "unit_price": 5.0,
            "amount": 5.0,
        },
    ]


def test_sums_that_agree_raise_confidence_and_sums_that_do_not_lower_it() -> None:
    good = LocalExtractor().extract([_totals_page("27.50")], SCHEMA)
    bad = LocalExtractor().extract([_totals_page("29.50")], SCHEMA)
    assert bad.result["total"] == 29.5  # read as written, not corrected
    for key in ("subtotal", "tax", "total"):
        assert good.field_metadata[key]["confidence"] >= 0.95
        assert bad.field_metadata[key]["confidence"] < good.field_metadata[key]["confidence"]
    assert bad.confidence < good.confidence


def test_issuer_from_legal_form_and_domain_not_the_customer_block() -> None:
    page = _page(
        [
            (100, 80, "INVOICE"),
            (100, 200, "Bill to:"),
            (100, 225, "Globex Corporation Ltd"),
            (100, 250, "12 Main Street"),
            (100, 1600, "Initech GmbH · Hauptstr. 1 · 10115 Berlin · info@initech.de"),
        ]
    )
    ex = LocalExtractor().extract([page], ExtractionSchema.parse({"vendor": "string"}))
    assert ex.result["vendor"] == "Initech GmbH"


def test_locate_grounds_values_in_the_words() -> None:
    page = _page([(100, 100, "Total due"), (600, 100, "1,234.50"), (100, 150, "Acme Widgets Inc")])
    hit = locate("1234.5", [page])
    assert hit is not None and hit[0] == 1 and hit[2] == "1,234.50" and hit[3] >= 0.9
    hit = locate("acme widgets", [page])
    assert hit is not None and hit[2] == "Acme Widgets" and hit[1][0] == 100
    assert locate("Nowhere Ltd", [page]) is None


def test_a_scanned_invoice_through_ocr() -> None:
    doc = generate("classic", "en", "scanned", seed=5)
    pages = ocr_pages(load_pages(doc.data, max_pages=5), get_ocr_engine("auto"))
    ex = LocalExtractor().extract(pages, SCHEMA)
    right = [k for k in SCALARS if _same(ex.result[k], doc.truth[k])]
    assert len(right) >= 7, {k: (ex.result[k], doc.truth[k]) for k in SCALARS}


def test_a_table_continued_on_a_second_page() -> None:
    first = _page(
        [
            (100, 80, "Acme Widgets GmbH"),
            (100, 100, "Description"),
            (700, 100, "Qty"),
            (1050, 100, "Amount"),
            (100, 140, "Widget"),
            (700, 140, "2"),
            (1050, 140, "20.00"),
        ]
    )
    second = _page(
        [
            (100, 100, "Description"),
            (700, 100, "Qty"),
            (1050, 100, "Amount"),
            (100, 140, "Gadget"),
            (700, 140, "1"),
            (1050, 140, "5.00"),
            (800, 260, "Total"),
            (1050, 260, "25.00"),
        ]
    )
    second.number = 2
    schema = ExtractionSchema.parse(
        {"total": "number", "line_items": [{"description": "string", "amount": "number"}]}
    )
    ex = LocalExtractor().extract([first, second], schema)
    assert ex.result["line_items"] == [
        {"description": "Widget", "amount": 20.0},
        {"description": "Gadget", "amount": 5.0},
    ]
    assert ex.result["total"] == 25.0 and ex.field_metadata["total"]["page"] == 2
    assert [row["amount"]["page"] for row in ex.field_metadata["line_items"]] == [1, 2]
    # The items add up to the total: both rows are sure of themselves.
    assert all(row["amount"]["confidence"] >= 0.9 for row in ex.field_metadata["line_items"])


def test_a_misread_last_header_is_still_the_amount_column() -> None:
    page = _page(
        [
            (100, 100, "Descrizione"),
            (700, 100, "Quantita"),
            (850, 100, "Prezzo"),
            (1050, 100, "taped"),  # "Importo" as OCR read a bold header
            (100, 140, "Desk lamp"),
            (700, 140, "12"),
            (850, 140, "29,19"),
            (1050, 140, "350,28"),
        ]
    )
    ex = LocalExtractor().extract([page], SCHEMA)
    assert ex.result["line_items"] == [
        {"description": "Desk lamp", "quantity": 12, "unit_price": 29.19, "amount": 350.28}
    ]


def test_till_slip_lines_with_a_quantity_line_below_the_name() -> None:
    page = _page(
        [
            (20, 100, "Eggs 10"),
            (40, 125, "3 x 3.03"),
            (420, 125, "9.09"),
            (20, 150, "Bread"),
            (420, 150, "2.50"),
            (20, 200, "TOTAL"),
            (420, 200, "11.59"),
        ],
        width=480,
    )
    ex = LocalExtractor().extract([page], SCHEMA)
    assert ex.result["line_items"] == [
        {"description": "Eggs 10", "quantity": 3, "unit_price": 3.03, "amount": 9.09},
        {"description": "Bread", "quantity": None, "unit_price": None, "amount": 2.5},
    ]
    assert ex.result["total"] == 11.59
