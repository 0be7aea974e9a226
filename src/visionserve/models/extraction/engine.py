"""The local extraction engine: a schema answered from a document's words and boxes.

For each schema leaf, :class:`LocalExtractor` maps the field to a concept
(``vocabulary``), collects typed candidates next to the concept's labels in six
languages (``candidates``), and adds label-free cues where labels are rare (the
issuer: legal forms, the top block's largest text, email and web domains; the
currency: symbols and codes; ``cues``). Arrays of objects become line items (``tables``).
The sums are checked against each other (subtotal + tax = total, the items add up
to the subtotal), which raises or lowers confidence. A field with no candidate is
``None``: nothing is invented.

Confidences are the candidate's score mapped through :data:`CALIBRATION`, measured
on the generated tuning families (see ``bench/extract.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz

from visionserve.models.extraction import coerce
from visionserve.models.extraction.candidates import labelled
from visionserve.models.extraction.cues import (
    currency_cues,
    issuer_cues,
    largest_amount,
    recipient_cues,
)
from visionserve.models.extraction.document import DocPage
from visionserve.models.extraction.facts import DocFacts, boolean, identifier, name_value, prepare
from visionserve.models.extraction.layout import Cell, build_layout
from visionserve.models.extraction.schema import ExtractionSchema, FieldSpec
from visionserve.models.extraction.tables import ItemRow, extract_rows
from visionserve.models.extraction.vocabulary import (
    CONCEPTS,
    TITLES,
    ConceptIndex,
    FieldTarget,
    TextEmbedder,
    concept_for,
    normalize,
)

# Raw candidate score → probability the value is right: piecewise linear, measured
# on the tuning families (bench/extract.py prints the table for a new calibration).
CALIBRATION: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (0.5, 0.45),
    (0.7, 0.7),
    (0.85, 0.86),
    (0.95, 0.93),
    (1.0, 0.96),
)
# Sums that agree within a cent (or 0.5% for long receipts with rounding).
_TOLERANCE = 0.011


@dataclass
class Extraction:
    """An extraction's answer.

    Attributes:
        result: The schema's shape filled with values (``None`` where not found).
        field_metadata: The same shape; each leaf is ``{"confidence", "page",
            "bbox": [x0, y0, x1, y1], "source_text"}`` (page pixels).
        confidence: Mean leaf confidence, a missing leaf counting 0.
    """

    result: dict[str, Any]
    field_metadata: dict[str, Any]
    confidence: float


@dataclass
class _Leaf:
    value: Any = None
    confidence: float = 0.0
    page: int | None = None
    bbox: list[float] | None = None
    source_text: str | None = None

    def meta(self) -> dict[str, Any]:
        return {
            "confidence": round(self.confidence, 3),
            "page": self.page,
            "bbox": self.bbox,
            "source_text": self.source_text,
        }


@dataclass
class _Items:
    rows: list[dict[str, _Leaf]]
    names: dict[str, str]  # concept -> the schema's item field name


class LocalExtractor:
    """Answers an extraction schema from a document's words.

    Args:
        embedder: MiniLM (``models.embedding.Embedder``) to map field names the
            vocabulary does not know to concepts; optional.
    """

    def __init__(self, embedder: TextEmbedder | None = None) -> None:
        self.embedder = embedder
        self._index = ConceptIndex(embedder) if embedder is not None else None
        # Patterns repeat their fields job after job: map each field once.
        self._targets: dict[tuple[str, str, bool, str], FieldTarget] = {}

    def extract(
        self, pages: list[DocPage], schema: ExtractionSchema, instructions: str = ""
    ) -> Extraction:
        """Fill a schema from pages that have words (text layer or OCR).

        Args:
            pages: The document's pages, with words.
            schema: The pattern's schema.
            instructions: The pattern's instructions (context for field matching).

        Returns:
            The result, per-field metadata and overall confidence.
        """
        doc = prepare(pages)
        leaves: list[_Leaf] = []
        sums: dict[str, _Leaf] = {}
        items: list[_Items] = []
        built = self._object(schema.root, doc, instructions, "", leaves, sums, items)
        _check_sums(sums, items)
        result, meta = _render(schema.root, built)
        confidence = sum(leaf.confidence for leaf in leaves) / len(leaves) if leaves else 0.0
        return Extraction(result, meta, round(confidence, 3))

    # --- walking the schema ---------------------------------------------------------

    def _object(
        self,
        node: FieldSpec,
        doc: DocFacts,
        instructions: str,
        parent: str,
        leaves: list[_Leaf],
        sums: dict[str, _Leaf],
        items: list[_Items],
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for child in node.children:
            name = f"{parent} {child.name}".strip()
            if child.kind == "object":
                out[child.name] = self._object(
                    child, doc, instructions, child.name, leaves, sums, items
                )
            elif child.kind == "array":
                out[child.name] = self._array(child, doc, instructions, leaves, items)
            else:
                target = self._target(name, child, instructions, item=False)
                leaf = _scalar(child, target, doc)
                if target.concept in ("subtotal", "tax", "total") and target.concept not in sums:
                    sums[target.concept] = leaf
                leaves.append(leaf)
                out[child.name] = leaf
        return out

    def _array(
        self,
        node: FieldSpec,
        doc: DocFacts,
        instructions: str,
        leaves: list[_Leaf],
        items: list[_Items],
    ) -> list[Any]:
        item = node.items
        if item is None or item.kind != "object" or not any(c.is_leaf for c in item.children):
            return []  # only arrays of objects (line items) are read from tables
        targets = {
            c.name: self._target(c.name, c, instructions, item=True)
            for c in item.children
            if c.is_leaf
        }
        rows = extract_rows(doc.layouts, doc.decimal)
        out: list[dict[str, _Leaf]] = []
        for row in rows:
            obj: dict[str, _Leaf] = {}
            for child in item.children:
                if not child.is_leaf:
                    continue
                concept = targets[child.name].concept
                cell = row.cells.get(concept or "")
                leaf = _item_leaf(child, cell, row) if cell is not None else _Leaf()
                obj[child.name] = leaf
                leaves.append(leaf)
            out.append(obj)
        names = {t.concept: name for name, t in targets.items() if t.concept}
        items.append(_Items(out, names))
        return out

    def _target(self, name: str, spec: FieldSpec, instructions: str, *, item: bool) -> FieldTarget:
        key = (name, spec.description, item, instructions)
        target = self._targets.get(key)
        if target is None:
            target = concept_for(
                name, spec.description, item=item, index=self._index, instructions=instructions
            )
            if target.concept is None and " " in name:  # "vendor name" → try "name" alone
                target = concept_for(spec.name, spec.description, item=item, index=self._index)
            if len(self._targets) > 4096:
                self._targets.clear()
            self._targets[key] = target
        return target


# --- scalar fields ----------------------------------------------------------------


def _coercer(kind: str, concept: str | None, doc: DocFacts) -> Callable[[str], Any]:
    ckind = CONCEPTS[concept].kind if concept else None
    if kind == "date" or ckind == "date":
        return lambda text: coerce.parse_date(text, doc.order, doc.languages)
    if kind == "integer":
        return lambda text: coerce.parse_integer(text, doc.decimal)
    if kind == "number":
        return lambda text: coerce.parse_amount(text, doc.decimal)
    if kind == "boolean":
        return boolean
    if ckind == "currency":
        return coerce.parse_currency
    if ckind == "id":
        return identifier
    if concept in ("vendor", "customer"):
        return name_value
    return lambda text: text.strip() or None


def _scalar(spec: FieldSpec, target: FieldTarget, doc: DocFacts) -> _Leaf:
    concept = target.concept
    coerce_fn = _coercer(spec.kind, concept, doc)

    def taken(cell: Cell, used: int) -> bool:
        owner = doc.owners.get(id(cell))
        return owner is not None and owner[0] != concept and owner[1] > used

    found = list(
        labelled(
            doc.layouts,
            target.labels,
            coerce_fn,
            # Another field's label (alone or with its value) is never this one's value.
            is_label=lambda c: id(c) in doc.label_cells or id(c) in doc.owners,
            taken=taken,
            far=spec.kind in ("number", "integer", "date"),
        )
    )
    if concept == "invoice_number":
        # "Invoice #S-2024-0042", "Rechnung 2024-17": a title followed by the number,
        # weaker than an explicit number label.
        for cand in labelled(
            doc.layouts, tuple(TITLES), coerce_fn, is_label=lambda c: False, taken=taken
        ):
            if cand.how == "inline":
                cand.score *= 0.8
                found.append(cand)
    if spec.kind == "date" or (concept and CONCEPTS[concept].kind == "date"):
        found = [c for c in found if isinstance(c.value, str)]
    if concept == "vendor":
        found += issuer_cues(doc)
    elif concept == "currency":
        found += currency_cues(doc)
    elif concept == "total" and not found:
        found += largest_amount(doc)
    elif concept == "customer" and not found:
        found += recipient_cues(doc)
    if not found:
        return _Leaf()
    best = max(found, key=lambda c: (c.score, -c.page, -c.cell.y0))
    # A value several labels agree on (or that a cue confirms) is surer.
    agree = sum(1 for c in found if c is not best and c.value == best.value)
    score = min(1.0, best.score + 0.03 * agree) * target.score**0.5
    value = best.value
    if spec.kind == "string" and not isinstance(value, str):
        value = str(value)
    if spec.kind == "integer" and isinstance(value, float):
        value = round(value)
    return _Leaf(
        value=value,
        confidence=calibrate(score * min(1.0, best.cell.confidence + 0.15)),
        page=best.page,
        bbox=best.bbox,
        source_text=best.text,
    )


# --- line items -------------------------------------------------------------------


def _item_leaf(spec: FieldSpec, cell: Any, row: ItemRow) -> _Leaf:
    value = cell.value
    if value is None:
        return _Leaf()
    if spec.kind == "integer" and isinstance(value, float):
        if abs(value - round(value)) > 1e-9:
            return _Leaf()
        value = round(value)
    if spec.kind == "string" and not isinstance(value, str):
        value = str(value)
    if spec.kind in ("number", "integer") and isinstance(value, str):
        return _Leaf()
    tokens = cell.tokens
    bbox = (
        [
            round(min(t.x0 for t in tokens), 1),
            round(min(t.y0 for t in tokens), 1),
            round(max(t.x1 for t in tokens), 1),
            round(max(t.y1 for t in tokens), 1),
        ]
        if tokens
        else None
    )
    ocr = min((t.confidence for t in tokens), default=1.0)
    return _Leaf(
        value=value,
        confidence=calibrate(row.score * min(1.0, ocr + 0.15)),
        page=row.page,
        bbox=bbox,
        source_text=cell.text or None,
    )


# --- consistency ------------------------------------------------------------------


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= max(_TOLERANCE, 0.005 * abs(b))


def _check_sums(sums: dict[str, _Leaf], items: list[_Items]) -> None:
    """Raise or lower confidence by whether the sums agree."""
    sub, tax, total = (sums.get(k) for k in ("subtotal", "tax", "total"))
    values = {k: v.value for k, v in sums.items() if isinstance(v.value, int | float)}
    if {"subtotal", "tax", "total"} <= values.keys():
        agree = _close(values["subtotal"] + values["tax"], values["total"])
        for leaf in (sub, tax, total):
            assert leaf is not None
            leaf.confidence = _adjust(leaf.confidence, agree)
    for table in items:
        rows = table.rows
        amount_key = table.names.get("amount")
        # Each row: quantity x unit price = amount.
        qty_key, unit_key = table.names.get("quantity"), table.names.get("unit_price")
        for row in rows:
            q, u, a = (row.get(k) if k else None for k in (qty_key, unit_key, amount_key))
            if q and u and a and all(isinstance(x.value, int | float) for x in (q, u, a)):
                agree = _close(q.value * u.value, a.value)
                for leaf in row.values():
                    leaf.confidence = _adjust(leaf.confidence, agree)
        if amount_key is None or not rows:
            continue
        amounts = [
            r[amount_key].value for r in rows if isinstance(r[amount_key].value, int | float)
        ]
        target = values.get("subtotal", values.get("total"))
        if target is None or len(amounts) != len(rows):
            continue
        agree = _close(sum(amounts), target)
        for row in rows:
            for leaf in row.values():
                leaf.confidence = _adjust(leaf.confidence, agree)


def _adjust(confidence: float, agree: bool) -> float:
    if confidence <= 0:
        return confidence
    if agree:
        return min(0.995, confidence + 0.5 * (1 - confidence) + 0.02)
    return confidence * 0.8


def calibrate(score: float) -> float:
    """A raw candidate score as a probability of being right (see :data:`CALIBRATION`)."""
    score = max(0.0, min(1.0, score))
    for (x0, y0), (x1, y1) in itertools.pairwise(CALIBRATION):
        if score <= x1:
            return y0 + (y1 - y0) * (score - x0) / (x1 - x0)
    return CALIBRATION[-1][1]


def _render(node: FieldSpec, built: Any) -> tuple[Any, Any]:
    """(result, metadata) from the tree of ``_Leaf`` objects the walk built."""
    if node.kind == "object":
        pairs = {c.name: _render(c, built[c.name]) for c in node.children}
        return {k: v[0] for k, v in pairs.items()}, {k: v[1] for k, v in pairs.items()}
    if node.kind == "array":
        assert node.items is not None
        rendered = [_render(node.items, item) for item in built]
        return [r[0] for r in rendered], [r[1] for r in rendered]
    leaf: _Leaf = built
    return leaf.value, leaf.meta()


# --- grounding --------------------------------------------------------------------


def locate(value: str, pages: list[DocPage]) -> tuple[int, list[float], str, float] | None:
    """Where a value (from a VLM, say) is written on the pages.

    Windows of up to eight consecutive tokens on each line are compared with the
    value (fuzzy, case-insensitive; numbers also by value).

    Args:
        value: The value's text (a number as its usual string).
        pages: The document's pages, with words.

    Returns:
        ``(page, [x0, y0, x1, y1], source_text, score)`` for the best match scoring
        at least 0.8, or None.
    """
    wanted = normalize(str(value))
    if not wanted:
        return None
    number = _as_number(str(value))
    decimal = coerce.decimal_mark(w.text for p in pages for w in p.words)
    best: tuple[float, int, list[float], str] | None = None
    size = len(wanted.split())
    for page in pages:
        layout = build_layout(page.words, page=page.number, width=page.width, height=page.height)
        for line in layout.lines:
            tokens = line.tokens
            for i in range(len(tokens)):
                for j in range(i + 1, min(len(tokens), i + max(size + 2, 1)) + 1):
                    window = tokens[i:j]
                    text = " ".join(t.text for t in window)
                    score = fuzz.ratio(wanted, normalize(text)) / 100
                    if number is not None:
                        parsed = coerce.parse_amount(text, decimal)
                        if parsed is not None and abs(parsed - number) < 0.005:
                            score = max(score, 0.97)
                    if best is None or score > best[0]:
                        bbox = [
                            round(min(t.x0 for t in window), 1),
                            round(min(t.y0 for t in window), 1),
                            round(max(t.x1 for t in window), 1),
                            round(max(t.y1 for t in window), 1),
                        ]
                        best = (score, page.number, bbox, text)
    if best is None or best[0] < 0.8:
        return None
    score, number_, bbox, text = best
    return number_, bbox, text, round(score, 3)


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
