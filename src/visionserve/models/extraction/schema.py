"""An extract pattern's schema as a typed tree of fields.

Two spellings are accepted (the ImgGo contract's compact form and full JSON Schema):

* compact: ``{"vendor": "string", "total": "number",
  "line_items": [{"description": "string", "amount": "number"}]}``; a nested dict is
  an object, a one-element list an array of that element;
* JSON Schema: a document with ``"type": "object"`` and ``"properties"``.

Both become the same :class:`FieldSpec` tree, checked once: an unknown type, an empty
object, too many fields or too deep a nesting is an :class:`InvalidSchema` whose
message names the path of the bad node in the document the client sent.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema

from visionserve.errors import FailureCategory, VisionServeError

FieldKind = Literal["string", "number", "integer", "boolean", "date", "object", "array"]
LEAF_KINDS: frozenset[str] = frozenset({"string", "number", "integer", "boolean", "date"})

#: The most fields (every node, leaves and containers) a schema may declare.
MAX_FIELDS = 200
#: The deepest nesting of objects and arrays.
MAX_DEPTH = 8
#: The longest schema document, as JSON.
MAX_SCHEMA_BYTES = 64_000

# JSON Schema keywords that make a compact-form dict a JSON Schema node instead.
_SCHEMA_KEYWORDS = frozenset(
    {
        "type",
        "description",
        "properties",
        "items",
        "required",
        "format",
        "enum",
        "title",
        "additionalProperties",
        "pattern",
        "minimum",
        "maximum",
        "default",
        "examples",
        "nullable",
        "$schema",
        "$id",
    }
)
_JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
# Compact-form type names, with the spellings clients use for them.
_COMPACT_TYPES: dict[str, FieldKind] = {
    "string": "string",
    "str": "string",
    "text": "string",
    "number": "number",
    "float": "number",
    "decimal": "number",
    "integer": "integer",
    "int": "integer",
    "boolean": "boolean",
    "bool": "boolean",
    "date": "date",
}
_DATE_FORMATS = frozenset({"date", "date-time"})


class InvalidSchema(VisionServeError):
    """A pattern schema that cannot be used; the message names the bad node's path."""

    code = "invalid_schema"
    status = 400
    category: FailureCategory = "invalid_input"


class ExtractionFailed(VisionServeError):
    """An extraction whose result does not fit the pattern's schema."""

    code = "extraction_failed"
    status = 422
    category: FailureCategory = "processing"


@dataclass
class FieldSpec:
    """One node of a schema.

    Attributes:
        kind: ``string``, ``number``, ``integer``, ``boolean``, ``date`` (leaves),
            ``object`` or ``array``.
        name: The key in its parent (``""`` for the root and for array items).
        path: Where the node sits in a result: ``line_items[].amount``.
        children: An object's fields, in declaration order.
        items: An array's element.
        description: The client's description, when it gave one (a hint for matching).
        enum: Allowed values, when the JSON Schema listed them.
    """

    kind: FieldKind
    name: str
    path: str
    children: list[FieldSpec] = field(default_factory=list)
    items: FieldSpec | None = None
    description: str = ""
    enum: list[Any] | None = None

    @property
    def is_leaf(self) -> bool:
        return self.kind in LEAF_KINDS

    def leaves(self) -> list[FieldSpec]:
        """Every leaf below (or at) this node, depth first."""
        if self.is_leaf:
            return [self]
        if self.kind == "array":
            return self.items.leaves() if self.items is not None else []
        return [leaf for child in self.children for leaf in child.leaves()]


class ExtractionSchema:
    """A parsed, checked pattern schema; build it with :meth:`parse`."""

    def __init__(self, root: FieldSpec, raw: dict[str, Any]) -> None:
        self.root = root
        self._raw = raw

    @classmethod
    def parse(cls, raw: dict[str, Any] | str) -> ExtractionSchema:
        """Parse and check a schema in compact or JSON Schema form.

        Args:
            raw: The schema as a dict, or as a JSON string.

        Returns:
            The schema.

        Raises:
            InvalidSchema: Not JSON, not an object, an unknown type, an empty object or
                array, more than :data:`MAX_FIELDS` fields or deeper than
                :data:`MAX_DEPTH`; the message names the path of the bad node.
        """
        if isinstance(raw, str):
            if len(raw.encode()) > MAX_SCHEMA_BYTES:
                raise InvalidSchema(f"schema is longer than {MAX_SCHEMA_BYTES} bytes")
            try:
                raw = json.loads(raw)
            except ValueError as exc:
                raise InvalidSchema(f"schema is not valid JSON: {exc.args[0]}") from None
        if not isinstance(raw, dict):
            raise InvalidSchema("schema must be a JSON object")
        try:
            size = len(json.dumps(raw))
        except (TypeError, ValueError):
            raise InvalidSchema("schema must be plain JSON") from None
        if size > MAX_SCHEMA_BYTES:
            raise InvalidSchema(f"schema is longer than {MAX_SCHEMA_BYTES} bytes")
        if not raw:
            raise InvalidSchema("schema has no fields")
        builder = _Builder()
        if _is_json_schema(raw):
            root = builder.json_node(raw, name="", path="", where="", depth=0)
            if root.kind != "object":
                raise InvalidSchema("schema: the top level must be an object (type 'object')")
        else:
            root = builder.compact_object(raw, path="", where="", depth=0)
        return cls(root, copy.deepcopy(raw))

    def raw(self) -> dict[str, Any]:
        """The schema as the client sent it (what a pattern stores)."""
        return copy.deepcopy(self._raw)

    def leaves(self) -> list[FieldSpec]:
        """Every leaf field, depth first (array item fields included)."""
        return self.root.leaves()

    @property
    def fields(self) -> list[FieldSpec]:
        """The top-level fields."""
        return self.root.children

    def to_json_schema(self, *, strict: bool = True) -> dict[str, Any]:
        """The schema as JSON Schema, for ``response_format: json_schema``.

        Args:
            strict: OpenAI's strict structured-output form: every property required,
                ``additionalProperties: false`` on every object, leaves nullable (a
                field not on the document is ``null``). Without it, the same tree
                with no ``required`` lists and open objects.

        Returns:
            A JSON Schema document whose root is an object.
        """
        return _to_json(self.root, strict=strict)

    def empty_result(self) -> dict[str, Any]:
        """A result with every leaf ``null`` and every array empty."""
        value = _empty(self.root)
        assert isinstance(value, dict)
        return value

    def validate_result(self, result: dict[str, Any]) -> None:
        """Check a result against the schema (types, keys, ISO dates).

        Args:
            result: An extraction result.

        Raises:
            ExtractionFailed: The result does not fit; the message names the first
                mismatch's path.
        """
        schema = _to_json(self.root, strict=True, dates=True)
        validator = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        error = jsonschema.exceptions.best_match(validator.iter_errors(result))
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path) or "(root)"
            raise ExtractionFailed(f"result does not fit the schema at {where}: {error.message}")


def _is_json_schema(raw: dict[str, Any]) -> bool:
    return raw.get("type") == "object" and isinstance(raw.get("properties"), dict)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


class _Builder:
    def __init__(self) -> None:
        self.count = 0

    def _counted(self, where: str, depth: int) -> None:
        self.count += 1
        if self.count > MAX_FIELDS:
            raise InvalidSchema(f"{where or 'schema'}: more than {MAX_FIELDS} fields")
        if depth > MAX_DEPTH:
            raise InvalidSchema(f"{where}: nested deeper than {MAX_DEPTH} levels")

    # --- compact form ---------------------------------------------------------------

    def compact_object(
        self, raw: dict[str, Any], *, path: str, where: str, depth: int
    ) -> FieldSpec:
        if not raw:
            raise InvalidSchema(f"{where or 'schema'}: an object needs at least one field")
        children = []
        for key, value in raw.items():
            if not isinstance(key, str) or not key.strip():
                raise InvalidSchema(f"{where or 'schema'}: field names must be non-empty strings")
            children.append(
                self.compact_node(
                    value, name=key, path=_join(path, key), where=_join(where, key), depth=depth + 1
                )
            )
        return FieldSpec(
            "object", name=path.rsplit(".", 1)[-1] if path else "", path=path, children=children
        )

    def compact_node(
        self, value: Any, *, name: str, path: str, where: str, depth: int
    ) -> FieldSpec:
        self._counted(where, depth)
        if isinstance(value, str):
            kind, _, description = value.partition(":")
            leaf = _COMPACT_TYPES.get(kind.strip().lower())
            if leaf is None:
                raise InvalidSchema(f"{where}: unknown type {value!r}")
            return FieldSpec(leaf, name=name, path=path, description=description.strip())
        if isinstance(value, dict):
            if _looks_like_json_node(value):
                return self.json_node(value, name=name, path=path, where=where, depth=depth)
            node = self.compact_object(value, path=path, where=where, depth=depth)
            node.name = name
            return node
        if isinstance(value, list):
            if len(value) != 1:
                raise InvalidSchema(f"{where}: an array is written as a list of one element")
            item = self.compact_node(
                value[0], name="", path=f"{path}[]", where=f"{where}[0]", depth=depth + 1
            )
            return FieldSpec("array", name=name, path=path, items=item)
        raise InvalidSchema(f"{where}: unknown type {json.dumps(value)[:40]}")

    # --- JSON Schema ----------------------------------------------------------------

    def json_node(
        self, raw: dict[str, Any], *, name: str, path: str, where: str, depth: int
    ) -> FieldSpec:
        if where:
            self._counted(where, depth)
        label = where or "schema"
        kind = _json_type(raw, label)
        description = raw.get("description") or raw.get("title") or ""
        if not isinstance(description, str):
            raise InvalidSchema(f"{label}.description: must be a string")
        if kind == "object":
            props = raw.get("properties")
            if not isinstance(props, dict) or not props:
                raise InvalidSchema(
                    f"{label}: an object needs 'properties' with at least one field"
                )
            children = []
            for key, sub in props.items():
                sub_where = _join(where, f"properties.{key}")
                if not isinstance(sub, dict):
                    raise InvalidSchema(f"{sub_where}: must be a schema object")
                children.append(
                    self.json_node(
                        sub, name=key, path=_join(path, key), where=sub_where, depth=depth + 1
                    )
                )
            return FieldSpec(
                "object", name=name, path=path, children=children, description=description
            )
        if kind == "array":
            items = raw.get("items")
            if not isinstance(items, dict):
                raise InvalidSchema(f"{label}: an array needs 'items' as a schema object")
            item = self.json_node(
                items, name="", path=f"{path}[]", where=_join(where, "items"), depth=depth + 1
            )
            return FieldSpec("array", name=name, path=path, items=item, description=description)
        enum = raw.get("enum")
        if enum is not None and not isinstance(enum, list):
            raise InvalidSchema(f"{label}.enum: must be a list")
        return FieldSpec(kind, name=name, path=path, description=description, enum=enum)


def _looks_like_json_node(value: dict[str, Any]) -> bool:
    kind = value.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    return (
        bool(kinds)
        and all(isinstance(k, str) and k in _JSON_TYPES for k in kinds)
        and set(value) <= _SCHEMA_KEYWORDS
    )


def _json_type(raw: dict[str, Any], label: str) -> FieldKind:
    kind = raw.get("type")
    if kind is None and isinstance(raw.get("properties"), dict):
        kind = "object"
    kinds = [k for k in (kind if isinstance(kind, list) else [kind]) if k != "null"]
    if len(kinds) != 1 or not isinstance(kinds[0], str):
        raise InvalidSchema(f"{label}: 'type' must name one type (with 'null' optional)")
    name = kinds[0]
    if name == "string" and raw.get("format") in _DATE_FORMATS:
        return "date"
    if name == "date":
        return "date"
    if name not in _JSON_TYPES:
        raise InvalidSchema(f"{label}: unknown type {name!r}")
    return name  # type: ignore[return-value]


def _to_json(node: FieldSpec, *, strict: bool, dates: bool = False) -> dict[str, Any]:
    out: dict[str, Any]
    if node.kind == "object":
        props = {c.name: _to_json(c, strict=strict, dates=dates) for c in node.children}
        out = {"type": "object", "properties": props}
        if strict:
            out["required"] = list(props)
            out["additionalProperties"] = False
    elif node.kind == "array":
        assert node.items is not None
        out = {"type": "array", "items": _to_json(node.items, strict=strict, dates=dates)}
    elif node.kind == "date":
        out = {"type": ["string", "null"]}
        if dates:
            out["format"] = "date"
        hint = "a date as YYYY-MM-DD"
        out["description"] = f"{node.description} ({hint})" if node.description else hint
        return out
    else:
        out = {"type": [node.kind, "null"]}
        if node.enum is not None:
            out["enum"] = [*node.enum, None] if None not in node.enum else list(node.enum)
    if node.description:
        out["description"] = node.description
    return out


def _empty(node: FieldSpec) -> Any:
    if node.kind == "object":
        return {c.name: _empty(c) for c in node.children}
    if node.kind == "array":
        return []
    return None


__all__ = [
    "LEAF_KINDS",
    "MAX_DEPTH",
    "MAX_FIELDS",
    "ExtractionFailed",
    "ExtractionSchema",
    "FieldKind",
    "FieldSpec",
    "InvalidSchema",
]
