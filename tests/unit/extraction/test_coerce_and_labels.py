"""Typed coercion per language and label matching across languages."""

from __future__ import annotations

import pytest

from visionserve.models.extraction.coerce import (
    date_order,
    decimal_mark,
    find_currency,
    parse_amount,
    parse_date,
    parse_integer,
)
from visionserve.models.extraction.vocabulary import CONCEPTS, concept_for, label_score


@pytest.mark.parametrize(
    ("text", "decimal", "value"),
    [
        ("1.234,56", ",", 1234.56),
        ("1,234.56", ".", 1234.56),
        ("€ 1.234,56", ",", 1234.56),
        ("1 234,56 €", ",", 1234.56),
        ("1\u202f234,56", ",", 1234.56),
        ("$12,000.00", ".", 12000.0),
        ("£4.09", ".", 4.09),
        ("CHF 1'234.50", ".", 1234.5),
        ("(12.00)", ".", -12.0),
        ("-3,5", ",", -3.5),
        ("1.000", ",", 1000.0),
        ("1,000", ".", 1000.0),
        ("INV-2024", ".", None),
        ("19 %", ".", None),
        ("12.50 and 3.00", ".", None),
    ],
)
def test_amounts(text: str, decimal: str, value: float | None) -> None:
    assert parse_amount(text, decimal) == value


def test_integers_and_currencies() -> None:
    assert parse_integer("3,00", ",") == 3
    assert parse_integer("2.5", ".") is None
    assert find_currency("Total 12,00 €") == "EUR"
    assert find_currency("$5") == "USD"
    assert find_currency("Währung: CHF") == "CHF"
    assert find_currency("nothing") is None


def test_decimal_mark_and_date_order_are_voted_from_the_document() -> None:
    assert decimal_mark(["1.234,56", "12,00", "Tel 12.34.56"]) == ","
    assert decimal_mark(["1,234.56", "$3.50"]) == "."
    assert date_order(["13/01/2024", "02/03/2024"]) == "DMY"
    assert date_order(["01/13/2024"]) == "MDY"
    assert date_order(["02/03/2024"], default="MDY") == "MDY"


@pytest.mark.parametrize(
    ("text", "order", "iso"),
    [
        ("05.03.2024", "DMY", "2024-03-05"),  # de
        ("05/03/2024", "DMY", "2024-03-05"),  # fr, es, it
        ("05-03-2024", "DMY", "2024-03-05"),  # nl
        ("03/05/2024", "MDY", "2024-03-05"),  # en-US
        ("2024-03-05", "DMY", "2024-03-05"),
        ("13/01/2024", "MDY", "2024-01-13"),  # the order cannot fit: the day is 13
        ("5. März 2024", "DMY", "2024-03-05"),
        ("5 mars 2024", "DMY", "2024-03-05"),
        ("5 maart 2024", "DMY", "2024-03-05"),
        ("5 de marzo de 2024", "DMY", "2024-03-05"),
        ("5 marzo 2024", "DMY", "2024-03-05"),
        ("March 5, 2024", "MDY", "2024-03-05"),
        ("Invoice date: 5 Mar 2024", "DMY", "2024-03-05"),
        ("31.02.2024", "DMY", None),
        ("total 12,50", "DMY", None),
    ],
)
def test_dates(text: str, order: str, iso: str | None) -> None:
    assert parse_date(text, order) == iso


def test_dateparser_fallback_for_other_spellings() -> None:
    assert parse_date("5th of March 2024", "DMY", ("en",)) == "2024-03-05"


@pytest.mark.parametrize(
    ("label", "concept"),
    [
        ("Invoice No.:", "invoice_number"),
        ("Rechnungsnummer", "invoice_number"),
        ("Numéro de facture", "invoice_number"),
        ("Factuurnummer:", "invoice_number"),
        ("Número de factura", "invoice_number"),
        ("Numero fattura", "invoice_number"),
        ("Gesamtbetrag", "total"),
        ("Montant TTC", "total"),
        ("Totaal", "total"),
        ("Importe total", "total"),
        ("Totale da pagare", "total"),
        ("Amount due", "total"),
        ("Total HT", "subtotal"),
        ("Zwischensumme", "subtotal"),
        ("MwSt. 19 %", "tax"),
        ("TVA (20%)", "tax"),
        ("BTW", "tax"),
        ("Fälligkeitsdatum", "due_date"),
        ("Date d'échéance", "due_date"),
        ("Rechnungsempfänger", "customer"),
        ("Facturé à", "customer"),
        ("Einzelpreis", "unit_price"),
        ("Désignation", "description"),
        ("Aantal", "quantity"),
        ("Rechnugsnummer", "invoice_number"),  # an OCR slip still matches, lower
    ],
)
def test_labels_across_languages(label: str, concept: str) -> None:
    scores = {name: label_score(label, c.labels) for name, c in CONCEPTS.items()}
    best = max(scores, key=lambda k: scores[k])
    assert best == concept, scores
    assert scores[concept] >= 0.6


def test_short_and_near_labels_do_not_match() -> None:
    assert label_score("Facture", CONCEPTS["customer"].labels) == 0.0  # not "facturé à"
    assert label_score("Van", CONCEPTS["tax"].labels) == 0.0  # not "vat"
    assert label_score("Rechnugsnummer", CONCEPTS["invoice_number"].labels) < 0.9


@pytest.mark.parametrize(
    ("name", "concept", "item"),
    [
        ("vendor_name", "vendor", False),
        ("supplierName", "vendor", False),
        ("invoice_number", "invoice_number", False),
        ("rechnungsnummer", "invoice_number", False),
        ("total_amount", "total", False),
        ("amount_due", "total", False),
        ("vat", "tax", False),
        ("issue_date", "invoice_date", False),
        ("bill_to", "customer", False),
        ("qty", "quantity", True),
        ("unit_price", "unit_price", True),
        ("line_total", "amount", True),
    ],
)
def test_field_names_map_to_concepts(name: str, concept: str, item: bool) -> None:
    assert concept_for(name, item=item).concept == concept


def test_unknown_field_names_keep_their_own_words() -> None:
    target = concept_for("purchase_order_reference_code")
    assert target.concept is None
    assert target.labels == ("purchase order reference code",)
