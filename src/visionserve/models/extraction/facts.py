"""What the extractor knows about a document before it looks for any field.

Its pages as lines and cells, its decimal mark, date order and languages (voted
from its own text), which cells are labels and of which field, and the shapes of
values: a name, an identifier, a yes/no.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from rapidfuzz import fuzz, process

from visionserve.models.extraction import coerce
from visionserve.models.extraction.candidates import label_at_start
from visionserve.models.extraction.document import DocPage
from visionserve.models.extraction.layout import PageLayout, build_layout
from visionserve.models.extraction.vocabulary import (
    CONCEPTS,
    ITEM_CONCEPTS,
    TITLES,
    normalize,
    strip_accents,
)

TITLE_WORDS = sorted({strip_accents(t.split()[0]) for t in TITLES if len(t) >= 5})
MONEY_TEXT = re.compile(r"\d[.,]\d{2}(?!\d)")
EMAIL = re.compile(r"[\w.+-]+@([\w-]+)\.[\w.-]+")
WEB = re.compile(r"\bwww\.([\w-]+)\.\w+")
LANG_HINTS: dict[str, tuple[str, ...]] = {
    "en": ("invoice", "total", "date", "due", "receipt", "amount", "description"),
    "de": ("rechnung", "datum", "gesamt", "betrag", "menge", "mwst", "summe"),
    "fr": ("facture", "montant", "date", "quantité", "prix", "tva", "échéance"),
    "nl": ("factuur", "datum", "totaal", "bedrag", "aantal", "btw", "omschrijving"),
    "es": ("factura", "fecha", "importe", "cantidad", "precio", "iva", "descripción"),
    "it": ("fattura", "data", "importo", "quantità", "prezzo", "iva", "descrizione"),
}


@dataclass
class DocFacts:
    """The document as the field finders see it."""

    layouts: list[PageLayout]
    decimal: str
    order: str
    languages: tuple[str, ...]
    texts: list[str] = field(default_factory=list)
    label_cells: set[int] = field(default_factory=set)  # id() of cells that are labels
    # id(cell) -> (concept, tokens) of the longest document-level label starting it.
    owners: dict[int, tuple[str, int]] = field(default_factory=dict)


def prepare(pages: list[DocPage]) -> DocFacts:
    """Lines, conventions and label cells of pages that have words."""
    layouts = [build_layout(p.words, page=p.number, width=p.width, height=p.height) for p in pages]
    texts = [c.text for layout in layouts for c in layout.cells]
    languages = languages_of(texts)
    default_order = "MDY" if languages[0] == "en" and any("$" in t for t in texts) else "DMY"
    doc = DocFacts(
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
            if name not in ITEM_CONCEPTS:
                doc.owners[id(cell)] = (name, used)
            # A cell that is a label and nothing else (no value after it).
            if used == len(cell.tokens):
                doc.label_cells.add(id(cell))
    return doc


def languages_of(texts: list[str]) -> tuple[str, ...]:
    words = Counter(w for t in texts for w in normalize(t).split())
    scores = {lang: sum(words[h] for h in hints) for lang, hints in LANG_HINTS.items()}
    ranked = sorted(scores, key=lambda k: -scores[k])
    return tuple(ranked[:2]) if scores[ranked[0]] else ("en",)


def boolean(text: str) -> bool | None:
    value = normalize(text)
    if value in ("yes", "y", "true", "ja", "oui", "si", "sí", "x", "paid", "bezahlt", "payé"):
        return True
    if value in ("no", "n", "false", "nein", "non", "nee", "unpaid"):
        return False
    return None


def identifier(text: str) -> str | None:
    tokens = text.split()
    if not tokens or len(tokens) > 3:
        return None
    value = tokens[0].strip(":#")
    if value.startswith(("#", "n°", "N°", "Nº", "nº")):
        value = value.lstrip("#nN°º").strip()
    if not any(ch.isdigit() for ch in value) or len(value) < 2:
        return None
    return value


def name_value(text: str) -> str | None:
    text = text.strip(" :")
    if len(text) < 2 or not any(ch.isalpha() for ch in text) or "@" in text:
        return None
    tokens = text.split()
    if len(tokens) <= 2 and any(any(ch.isdigit() for ch in t) for t in tokens):
        return None  # "F-2023-8193", "Nr 12": an identifier, not a name
    squashed = strip_accents(text.casefold()).replace(" ", "")
    if "#" in text or any(
        process.extractOne(word, TITLE_WORDS, scorer=fuzz.ratio, score_cutoff=85)
        for word in (strip_accents(tokens[0].casefold()), squashed)
    ):
        return None  # "INVOICE #S-2024-0042", "FACTU UR": a title line
    if coerce.parse_date(text) or coerce.parse_amount(text) is not None:
        return None
    return text
