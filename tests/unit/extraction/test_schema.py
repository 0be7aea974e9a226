"""Pattern schemas: compact and JSON Schema forms, errors named by path, limits, results."""

from __future__ import annotations

import json

import pytest

from visionserve.models.extraction.schema import (
    MAX_DEPTH,
    MAX_FIELDS,
    ExtractionFailed,
    ExtractionSchema,
    InvalidSchema,
)

COMPACT = {
    "vendor": "string",
    "total": "number",
    "pages": "integer",
    "paid": "boolean",
    "invoice_date": "date",
    "address": {"street": "string", "city": "string"},
    "line_items": [{"description": "string", "amount": "number"}],
}

FULL = {
    "type": "object",
    "properties": {
        "vendor": {"type": "string", "description": "who issued it"},
        "total": {"type": ["number", "null"]},
        "invoice_date": {"type": "string", "format": "date"},
        "line_items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"description": {"type": "string"}, "qty": {"type": "integer"}},
            },
        },
    },
}


def test_compact_form_becomes_a_typed_tree() -> None:
    schema = ExtractionSchema.parse(COMPACT)
    leaves = {leaf.path: leaf.kind for leaf in schema.leaves()}
    assert leaves == {
        "vendor": "string",
        "total": "number",
        "pages": "integer",
        "paid": "boolean",
        "invoice_date": "date",
        "address.street": "string",
        "address.city": "string",
        "line_items[].description": "string",
        "line_items[].amount": "number",
    }
    assert schema.raw() == COMPACT
    assert [f.name for f in schema.fields][:2] == ["vendor", "total"]


def test_json_schema_form_and_a_json_string() -> None:
    schema = ExtractionSchema.parse(json.dumps(FULL))
    kinds = {leaf.path: leaf.kind for leaf in schema.leaves()}
    assert kinds == {
        "vendor": "string",
        "total": "number",
        "invoice_date": "date",
        "line_items[].description": "string",
        "line_items[].qty": "integer",
    }
    assert schema.fields[0].description == "who issued it"


def test_compact_values_may_be_json_schema_nodes() -> None:
    schema = ExtractionSchema.parse({"total": {"type": "number", "description": "incl. VAT"}})
    assert schema.leaves()[0].kind == "number"
    assert schema.leaves()[0].description == "incl. VAT"


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"vendor": "money"}, "vendor: unknown type 'money'"),
        (
            {"line_items": [{"description": "string", "amount": "money"}]},
            "line_items[0].amount: unknown type 'money'",
        ),
        ({"a": {"b": 3}}, "a.b: unknown type 3"),
        ({"items": ["string", "number"]}, "items: an array is written as a list of one element"),
        ({"empty": {}}, "empty: an object needs at least one field"),
        (
            {
                "type": "object",
                "properties": {
                    "line_items": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"amount": {"type": "money"}}},
                    }
                },
            },
            "properties.line_items.items.properties.amount: unknown type 'money'",
        ),
        (
            {"type": "object", "properties": {"x": {"type": "array"}}},
            "properties.x: an array needs 'items'",
        ),
    ],
)
def test_bad_nodes_are_named_by_path(raw: dict[str, object], path: str) -> None:
    with pytest.raises(InvalidSchema) as info:
        ExtractionSchema.parse(raw)
    assert path in info.value.message
    assert info.value.code == "invalid_schema"
    assert info.value.status == 400


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", "{}", '"string"'])
def test_not_a_schema(raw: str) -> None:
    with pytest.raises(InvalidSchema):
        ExtractionSchema.parse(raw)


def test_too_many_fields() -> None:
    with pytest.raises(InvalidSchema, match=f"more than {MAX_FIELDS} fields"):
        ExtractionSchema.parse({f"field_{i}": "string" for i in range(500)})
    ExtractionSchema.parse({f"field_{i}": "string" for i in range(MAX_FIELDS)})


def test_too_deep() -> None:
    node: object = "string"
    for _ in range(20):
        node = {"child": node}
    with pytest.raises(InvalidSchema, match=f"deeper than {MAX_DEPTH}"):
        ExtractionSchema.parse(node)  # type: ignore[arg-type]


def test_strict_json_schema_for_structured_output() -> None:
    out = ExtractionSchema.parse(COMPACT).to_json_schema(strict=True)
    assert out["additionalProperties"] is False
    assert out["required"] == list(COMPACT)
    assert out["properties"]["total"]["type"] == ["number", "null"]
    assert "YYYY-MM-DD" in out["properties"]["invoice_date"]["description"]
    items = out["properties"]["line_items"]["items"]
    assert items["additionalProperties"] is False
    assert items["required"] == ["description", "amount"]
    loose = ExtractionSchema.parse(COMPACT).to_json_schema(strict=False)
    assert "required" not in loose and "additionalProperties" not in loose


def test_validate_result() -> None:
    schema = ExtractionSchema.parse(COMPACT)
    good = schema.empty_result()
    assert good["line_items"] == [] and good["address"] == {"street": None, "city": None}
    schema.validate_result(good)
    good.update(vendor="Acme", total=12.5, pages=2, paid=True, invoice_date="2024-01-31")
    good["line_items"] = [{"description": "x", "amount": 1.0}]
    schema.validate_result(good)

    with pytest.raises(ExtractionFailed) as info:
        schema.validate_result({**good, "total": "12.50"})
    assert info.value.code == "extraction_failed" and "total" in info.value.message
    with pytest.raises(ExtractionFailed, match="invoice_date"):
        schema.validate_result({**good, "invoice_date": "31/01/2024"})
    with pytest.raises(ExtractionFailed):
        schema.validate_result({**good, "surprise": 1})
    with pytest.raises(ExtractionFailed, match=r"line_items\.0"):
        schema.validate_result({**good, "line_items": [{"description": "x", "amount": "1"}]})
