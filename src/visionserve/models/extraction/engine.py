"""The local extraction engine: a schema answered from a document's words and boxes.

For each schema leaf, :class:`LocalExtractor` maps the field to a concept
(``vocabulary``), collects typed candidates next to the concept's labels in six
languages (``candidates``), and adds label-free cues where labels are rare (the
issuer: legal forms, the top block's largest text, email and web domains; the
currency: symbols and codes). Arrays of objects become line items (``tables``).
The sums are checked against each other (subtotal + tax = total, the items add up
to the subtotal), which raises or lowers confidence. A field with no candidate is
``None``: nothing is invented.

Confidences are the candidate's score mapped through :data:`CALIBRATION`, measured
on the generated tuning families (see ``bench/extract.py``).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz, process

from visionserve.models.extraction import coerce
from visionserve.models.extraction.candidates import Candidate, label_at_start, labelled
from visionserve.models.extraction.document import DocPage
from visionserve.models.extraction.layout import Cell, PageLayout, build_layout
from visionserve.models.extraction.schema import ExtractionSchema, FieldSpec
from visionserve.models.extraction.tables import ItemRow, extract_rows
from visionserve.models.extraction.vocabulary import (
    CONCEPTS,
    LEGAL_FORMS,
    TITLES,
    ConceptIndex,
    FieldTarget,
    TextEmbedder,
    concept_for,
    normalize,
    strip_accents,
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

_TITLE_WORDS = sorted({strip_accents(t.split()[0]) for t in TITLES if len(t) >= 5})
_MONEY_TEXT = re.compile(r"\d[.,]\d{2}(?!\d)")
_EMAIL = re.compile(r"[\w.+-]+@([\w-]+)\.[\w.-]+")
_WEB = re.compile(r"\bwww\.([\w-]+)\.\w+")
_LANG_HINTS: dict[str, tuple[str, ...]] = {
    "en": ("invoice", "total", "date", "due", "receipt", "amount", "description"),
    "de": ("rechnung", "datum", "gesamt", "betrag", "menge", "mwst", "summe"),
    "fr": ("facture", "montant", "date", "quantité", "prix", "tva", "échéance"),
    "nl": ("factuur", "datum", "totaal", "bedrag", "aantal", "btw", "omschrijving"),
    "es": ("factura", "fecha", "importe", "cantidad", "precio", "iva", "descripción"),
    "it": ("fattura", "data", "importo", "quantità", "prezzo", "iva", "descrizione"),
}


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


@dataclass
class _Doc:
    layouts: list[PageLayout]
    decimal: str
    order: str
    languages: tuple[str, ...]
    texts: list[str] = field(default_factory=list)
    label_cells: set[int] = field(default_factory=set)  # id() of cells that are labels
    # id(cell) -> (concept, tokens) of the longest document-level label starting it.
    owners: dict[int, tuple[str, int]] = field(default_factory=dict)


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
        doc = _prepare(pages)
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
        doc: _Doc,
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
        doc: _Doc,
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


# --- document-level facts ---------------------------------------------------------


def _prepare(pages: list[DocPage]) -> _Doc:
    layouts = [build_layout(p.words, page=p.number, width=p.width, height=p.height) for p in pages]
    texts = [c.text for layout in layouts for c in layout.cells]
    languages = _languages(texts)
    default_order = "MDY" if languages[0] == "en" and any("$" in t for t in texts) else "DMY"
    doc = _Doc(
        layouts=layouts,
        decimal=coerce.decimal_mark(texts),
        order=coerce.date_order(texts, default_order),
        languages=languages,
        texts=texts,
    )
    for layout in layouts:
        for cell in layout.cells:
            best = (0.0, 0, "")
            for concept in CONCEPTS.values():
                score, used = label_at_start(cell, concept.labels)
                if score >= 0.85 and (used, score) > (best[1], best[0]):
                    best = (score, used, concept.name)
            score, used, name = best
            if not score:
                continue
            if concept_kind_document(name):
                doc.owners[id(cell)] = (name, used)
            # A cell that is a label and nothing else (no value after it).
            if used == len(cell.tokens):
                doc.label_cells.add(id(cell))
    return doc


def concept_kind_document(name: str) -> bool:
    return name not in ("description", "quantity", "unit_price", "amount")


def _languages(texts: list[str]) -> tuple[str, ...]:
    words = Counter(w for t in texts for w in normalize(t).split())
    scores = {lang: sum(words[h] for h in hints) for lang, hints in _LANG_HINTS.items()}
    ranked = sorted(scores, key=lambda k: -scores[k])
    return tuple(ranked[:2]) if scores[ranked[0]] else ("en",)


# --- scalar fields ----------------------------------------------------------------


def _coercer(kind: str, concept: str | None, doc: _Doc) -> Callable[[str], Any]:
    ckind = CONCEPTS[concept].kind if concept else None
    if kind == "date" or ckind == "date":
        return lambda text: coerce.parse_date(text, doc.order, doc.languages)
    if kind == "integer":
        return lambda text: coerce.parse_integer(text, doc.decimal)
    if kind == "number":
        return lambda text: coerce.parse_amount(text, doc.decimal)
    if kind == "boolean":
        return _boolean
    if ckind == "currency":
        return coerce.parse_currency
    if ckind == "id":
        return _identifier
    if concept in ("vendor", "customer"):
        return _name
    return lambda text: text.strip() or None


def _scalar(spec: FieldSpec, target: FieldTarget, doc: _Doc) -> _Leaf:
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
        found += _issuer_cues(doc)
    elif concept == "currency":
        found += _currency_cues(doc)
    elif concept == "total" and not found:
        found += _largest_amount(doc)
    elif concept == "customer" and not found:
        found += _recipient_cues(doc)
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


def _boolean(text: str) -> bool | None:
    value = normalize(text)
    if value in ("yes", "y", "true", "ja", "oui", "si", "sí", "x", "paid", "bezahlt", "payé"):
        return True
    if value in ("no", "n", "false", "nein", "non", "nee", "unpaid"):
        return False
    return None


def _identifier(text: str) -> str | None:
    tokens = text.split()
    if not tokens or len(tokens) > 3:
        return None
    value = tokens[0].strip(":#")
    if value.startswith(("#", "n°", "N°", "Nº", "nº")):
        value = value.lstrip("#nN°º").strip()
    if not any(ch.isdigit() for ch in value) or len(value) < 2:
        return None
    return value


def _name(text: str) -> str | None:
    text = text.strip(" :")
    if len(text) < 2 or not any(ch.isalpha() for ch in text) or "@" in text:
        return None
    tokens = text.split()
    if len(tokens) <= 2 and any(any(ch.isdigit() for ch in t) for t in tokens):
        return None  # "F-2023-8193", "Nr 12": an identifier, not a name
    squashed = strip_accents(text.casefold()).replace(" ", "")
    if "#" in text or any(
        process.extractOne(word, _TITLE_WORDS, scorer=fuzz.ratio, score_cutoff=85)
        for word in (strip_accents(tokens[0].casefold()), squashed)
    ):
        return None  # "INVOICE #S-2024-0042", "FACTU UR": a title line
    if coerce.parse_date(text) or coerce.parse_amount(text) is not None:
        return None
    return text


def _issuer_cues(doc: _Doc) -> list[Candidate]:
    """Who issued the document when no label says: legal forms, big top text, domains."""
    out: list[Candidate] = []
    if not doc.layouts:
        return out
    customer = _customer_block(doc)
    domains = {
        m.group(1).lower() for t in doc.texts for rx in (_EMAIL, _WEB) for m in rx.finditer(t)
    }
    first = doc.layouts[0]
    heights = [c.height for c in first.cells] or [1.0]
    body = sorted(heights)[len(heights) // 2]
    for layout in doc.layouts:
        for cell in layout.cells:
            if id(cell) in customer or id(cell) in doc.label_cells:
                continue
            text = cell.text
            top = layout.number == 1 and cell.y1 < 0.3 * layout.height
            score = 0.0
            # The last legal form ends the name ("... y asociados S.Com.").
            match = next(reversed(list(LEGAL_FORMS.finditer(text))), None)
            name = _name(_company_segment(text, match) if match else text)
            if name is None or normalize(name) in TITLES:
                continue
            if match:
                score = 0.86 if top else 0.8
            elif top and cell.height > 1.3 * body and len(name) >= 3:
                score = 0.62
            elif top and _heads_address(layout, cell):
                score = 0.6 + (0.05 if cell.height > 1.1 * body else 0.0)
            if score and domains:
                squashed = strip_accents(normalize(LEGAL_FORMS.sub("", name))).replace(" ", "")
                if any(fuzz.partial_ratio(d, squashed) >= 85 for d in domains if len(d) >= 3):
                    score += 0.08
            if score:
                out.append(Candidate(name, cell, score, "cue"))
    return out


def _recipient_cues(doc: _Doc) -> list[Candidate]:
    """An unlabelled address block near the top, above any amount, that is not the
    issuer's (a letter's recipient window)."""
    if not doc.layouts:
        return []
    issuer = max(_issuer_cues(doc), key=lambda c: c.score, default=None)
    issuer_name = normalize(str(issuer.value)) if issuer else ""
    layout = doc.layouts[0]
    if layout.width < 0.5 * layout.height:
        return []  # a till slip has no recipient block
    for line in layout.lines:
        if line.y1 > 0.4 * layout.height or (
            coerce.find_amounts(line.text, doc.decimal)
            and any(coerce.parse_amount(c.text, doc.decimal) is not None for c in line.cells)
        ):
            break  # the recipient block comes before the items and sums
        for cell in line.cells:
            if id(cell) in doc.label_cells or (issuer and cell.line == issuer.cell.line):
                continue
            name = _name(cell.text)
            if not name or normalize(name) in TITLES or not _heads_address(layout, cell):
                continue
            if issuer_name and fuzz.partial_ratio(normalize(name), issuer_name) >= 85:
                continue  # the issuer's brand or sender line
            return [Candidate(name, cell, 0.55, "cue")]
    return []


def _heads_address(layout: PageLayout, cell: Cell) -> bool:
    """Whether a digit-free cell sits on top of an address (a sender or recipient
    block): one to three aligned lines right below it, one of them with a number."""
    if any(ch.isdigit() for ch in cell.text) or len(cell.tokens) > 6:
        return False
    bottom = cell.y1
    for line in layout.lines[cell.line + 1 : cell.line + 4]:
        if line.y0 - bottom > 1.5 * cell.height:
            return False
        aligned = [
            o
            for o in line.cells
            if abs(o.x0 - cell.x0) < cell.height or abs(o.x1 - cell.x1) < cell.height
        ]
        if not aligned:
            continue  # a line of another column (a title beside the sender block)
        if any(ch.isdigit() for o in aligned for ch in o.text):
            return True
        bottom = line.y1
    return False


def _company_segment(text: str, match: re.Match[str]) -> str:
    """The company name ending at a legal form, out of a footer line like
    ``Acme GmbH · Hauptstr. 1 · Berlin``."""
    head = text[: match.end()]
    for sep in ("·", "|", "•", " - ", " – "):
        head = head.rsplit(sep, 1)[-1] if sep in head else head
    return head.strip()


def _customer_block(doc: _Doc) -> set[int]:
    """Cells under a customer label (bill to ...): never the issuer."""
    labels = CONCEPTS["customer"].labels
    block: set[int] = set()
    for layout in doc.layouts:
        for cell in layout.cells:
            score, _ = label_at_start(cell, labels)
            if score < 0.85:
                continue
            block.add(id(cell))
            for line in layout.lines[cell.line : cell.line + 5]:
                if line.y0 - cell.y1 > 6 * cell.height:
                    break
                for other in line.cells:
                    if other.x0 < cell.x0 + 0.3 * layout.width and other.x1 > cell.x0 - 5:
                        block.add(id(other))
    return block


def _currency_cues(doc: _Doc) -> list[Candidate]:
    seen: Counter[str] = Counter()
    where: dict[str, Cell] = {}
    for layout in doc.layouts:
        for cell in layout.cells:
            code = coerce.find_currency(cell.text)
            if code:
                seen[code] += 1
                where.setdefault(code, cell)
    if not seen:
        return []
    code, count = seen.most_common(1)[0]
    share = count / sum(seen.values())
    return [Candidate(code, where[code], 0.7 + 0.25 * share, "detector")]


def _largest_amount(doc: _Doc) -> list[Candidate]:
    best: Candidate | None = None
    for layout in doc.layouts:
        for cell in layout.cells:
            value = coerce.parse_amount(cell.text, doc.decimal)
            if value is None or not _MONEY_TEXT.search(cell.text):
                continue  # "613707" is a receipt number, not an amount
            if best is None or value > best.value:
                best = Candidate(value, cell, 0.45, "detector")
    return [best] if best else []


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
