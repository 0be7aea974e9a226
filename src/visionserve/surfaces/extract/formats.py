"""A job's result in the pattern's ``output_format``.

``json`` keeps the result an object; ``yaml``, ``xml``, ``csv`` and ``text`` turn it
into one string (the job's ``result`` is then that string). CSV has one row per
item of the result's arrays of objects, with the parent fields repeated on each row.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any, Literal
from xml.etree import ElementTree as ET

import yaml

OutputFormat = Literal["json", "yaml", "xml", "csv", "text"]
FORMATS: tuple[str, ...] = ("json", "yaml", "xml", "csv", "text")


def render(result: dict[str, Any], fmt: str) -> dict[str, Any] | str:
    """``result`` as ``fmt`` asks: the object itself for json, else a string."""
    if fmt == "json":
        return result
    if fmt == "yaml":
        return yaml.safe_dump(result, sort_keys=False, allow_unicode=True)
    if fmt == "xml":
        return to_xml(result)
    if fmt == "csv":
        return to_csv(result)
    if fmt == "text":
        return to_text(result)
    raise ValueError(f"unknown output_format {fmt!r}")


# --- xml ---------------------------------------------------------------------------

_XML_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def _tag(name: str) -> str:
    tag = _XML_NAME.sub("_", name) or "field"
    return tag if re.match(r"[A-Za-z_]", tag) else f"_{tag}"


def _xml_value(parent: ET.Element, tag: str, value: Any) -> None:
    node = ET.SubElement(parent, _tag(tag))
    if value is None:
        node.set("nil", "true")
    elif isinstance(value, dict):
        for key, item in value.items():
            _xml_value(node, key, item)
    elif isinstance(value, list):
        for item in value:
            _xml_value(node, "item", item)
    elif isinstance(value, bool):
        node.text = "true" if value else "false"
    else:
        node.text = str(value)


def to_xml(result: dict[str, Any]) -> str:
    """``<result>`` with one element per field; list items are ``<item>``, nulls ``nil``."""
    root = ET.Element("result")
    for key, value in result.items():
        _xml_value(root, key, value)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


# --- csv ---------------------------------------------------------------------------


def _flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar leaves of ``value`` by dotted path; arrays of objects are left out."""
    flat: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, dict):
            flat.update(_flatten(item, f"{path}."))
        elif isinstance(item, list):
            if not any(isinstance(x, dict) for x in item):
                flat[path] = "; ".join("" if x is None else _cell(x) for x in item)
        else:
            flat[path] = item
    return flat


def _tables(value: dict[str, Any], prefix: str = "") -> list[tuple[str, list[dict[str, Any]]]]:
    """Every array of objects in ``value`` with its dotted path."""
    found: list[tuple[str, list[dict[str, Any]]]] = []
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, dict):
            found += _tables(item, f"{path}.")
        elif isinstance(item, list) and any(isinstance(x, dict) for x in item):
            found.append((path, [x for x in item if isinstance(x, dict)]))
    return found


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def to_csv(result: dict[str, Any]) -> str:
    """A header and one row per array item (parent fields repeated); one row if none."""
    parent = _flatten(result)
    rows: list[dict[str, Any]] = []
    for path, items in _tables(result):
        for item in items:
            rows.append({**parent, **{f"{path}.{k}": v for k, v in _flatten(item).items()}})
    if not rows:
        rows = [parent]
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()


# --- text --------------------------------------------------------------------------


def _text_lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines += _text_lines(item, indent + 1)
            else:
                lines.append(f"{pad}{key}: {_text_scalar(item)}")
    elif isinstance(value, list):
        for n, item in enumerate(value, start=1):
            if isinstance(item, dict):
                lines.append(f"{pad}{n}.")
                lines += _text_lines(item, indent + 1)
            else:
                lines.append(f"{pad}{n}. {_text_scalar(item)}")
    return lines


def _text_scalar(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "(not found)" if value is None else "(none)"
    return _cell(value)


def to_text(result: dict[str, Any]) -> str:
    """One ``field: value`` line per field, nested fields and list items indented."""
    return "\n".join(_text_lines(result, 0)) + "\n"
