"""extract's output formats: yaml, xml, csv and text renderings of a result."""

from __future__ import annotations

import csv
import io
from xml.etree import ElementTree as ET

import pytest
import yaml

from visionserve.surfaces.extract.formats import render

RESULT = {
    "vendor": {"name": "Müller GmbH", "vat_id": "DE123456789"},
    "invoice_number": "R-2024/17",
    "paid": False,
    "tags": ["urgent", "q1"],
    "line_items": [
        {"description": 'Bolts, "M8"', "amount": 12.5},
        {"description": "Nuts", "amount": None},
    ],
    "payments": [{"date": "2024-02-01", "amount": 5.0}],
    "total": 17.5,
    "2nd field": None,
}


def test_json_is_the_object_itself() -> None:
    assert render(RESULT, "json") is RESULT


def test_yaml_round_trips() -> None:
    assert yaml.safe_load(render(RESULT, "yaml")) == RESULT  # type: ignore[arg-type]


def test_xml_elements_items_and_nils() -> None:
    root = ET.fromstring(render(RESULT, "xml"))  # type: ignore[arg-type]
    assert root.findtext("vendor/name") == "Müller GmbH"
    assert [i.findtext("description") for i in root.findall("line_items/item")] == [
        'Bolts, "M8"',
        "Nuts",
    ]
    assert root.find("line_items/item[2]/amount").get("nil") == "true"  # type: ignore[union-attr]
    assert root.findtext("paid") == "false"
    assert [t.text for t in root.findall("tags/item")] == ["urgent", "q1"]
    assert root.find("_2nd_field") is not None  # not a valid XML name as given


def test_csv_one_row_per_array_item_with_parents_repeated() -> None:
    rows = list(csv.DictReader(io.StringIO(render(RESULT, "csv"))))  # type: ignore[arg-type]
    assert len(rows) == 3  # two line items, then one payment
    assert all(r["vendor.name"] == "Müller GmbH" and r["total"] == "17.5" for r in rows)
    assert rows[0]["line_items.description"] == 'Bolts, "M8"'
    assert rows[1]["line_items.amount"] == "" and rows[1]["payments.date"] == ""
    assert rows[2]["payments.date"] == "2024-02-01" and rows[2]["line_items.description"] == ""
    assert rows[0]["tags"] == "urgent; q1" and rows[0]["paid"] == "false"


def test_csv_without_arrays_is_one_row() -> None:
    rows = list(csv.reader(io.StringIO(render({"a": 1, "b": None}, "csv"))))  # type: ignore[arg-type]
    assert rows == [["a", "b"], ["1", ""]]


def test_text_lines() -> None:
    lines = render(RESULT, "text").splitlines()  # type: ignore[union-attr]
    assert "invoice_number: R-2024/17" in lines
    assert "  name: Müller GmbH" in lines and "vendor:" in lines
    assert "  2." in lines and "    amount: (not found)" in lines


def test_unknown_format() -> None:
    with pytest.raises(ValueError):
        render(RESULT, "pdf")
