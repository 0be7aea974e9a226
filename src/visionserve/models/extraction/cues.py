"""Label-free cues: who issued the document, who it is for, its currency, its total.

Issuers are often only in a logo, a footer or the sender block: a legal form
(GmbH, B.V., S.A., Ltd, ...), the largest text at the top, a name heading an address,
confirmed by an email or web domain. A recipient without a label is an address
block near the top that is not the issuer's (a letter's window).
"""

from __future__ import annotations

import re
from collections import Counter

from rapidfuzz import fuzz

from visionserve.models.extraction import coerce
from visionserve.models.extraction.candidates import Candidate, label_at_start
from visionserve.models.extraction.facts import EMAIL, MONEY_TEXT, WEB, DocFacts, name_value
from visionserve.models.extraction.layout import Cell, PageLayout
from visionserve.models.extraction.vocabulary import (
    CONCEPTS,
    LEGAL_FORMS,
    TITLES,
    normalize,
    strip_accents,
)


def issuer_cues(doc: DocFacts) -> list[Candidate]:
    """Who issued the document when no label says: legal forms, big top text, domains."""
    out: list[Candidate] = []
    if not doc.layouts:
        return out
    customer = customer_block(doc)
    domains = {m.group(1).lower() for t in doc.texts for rx in (EMAIL, WEB) for m in rx.finditer(t)}
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
            name = name_value(company_segment(text, match) if match else text)
            if name is None or normalize(name) in TITLES:
                continue
            if match:
                score = 0.86 if top else 0.8
            elif top and cell.height > 1.3 * body and len(name) >= 3:
                score = 0.62
            elif top and heads_address(layout, cell):
                score = 0.6 + (0.05 if cell.height > 1.1 * body else 0.0)
            if score and domains:
                squashed = strip_accents(normalize(LEGAL_FORMS.sub("", name))).replace(" ", "")
                if any(fuzz.partial_ratio(d, squashed) >= 85 for d in domains if len(d) >= 3):
                    score += 0.08
            if score:
                out.append(Candidate(name, cell, score, "cue"))
    return out


def recipient_cues(doc: DocFacts) -> list[Candidate]:
    """An unlabelled address block near the top, above any amount, that is not the
    issuer's (a letter's recipient window)."""
    if not doc.layouts:
        return []
    issuer = max(issuer_cues(doc), key=lambda c: c.score, default=None)
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
            name = name_value(cell.text)
            if not name or normalize(name) in TITLES or not heads_address(layout, cell):
                continue
            if issuer_name and fuzz.partial_ratio(normalize(name), issuer_name) >= 85:
                continue  # the issuer's brand or sender line
            return [Candidate(name, cell, 0.55, "cue")]
    return []


def heads_address(layout: PageLayout, cell: Cell) -> bool:
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


def company_segment(text: str, match: re.Match[str]) -> str:
    """The company name ending at a legal form, out of a footer line like
    ``Acme GmbH · Hauptstr. 1 · Berlin``."""
    head = text[: match.end()]
    for sep in ("·", "|", "•", " - ", " – "):
        head = head.rsplit(sep, 1)[-1] if sep in head else head
    return head.strip()


def customer_block(doc: DocFacts) -> set[int]:
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


def currency_cues(doc: DocFacts) -> list[Candidate]:
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


def largest_amount(doc: DocFacts) -> list[Candidate]:
    best: Candidate | None = None
    for layout in doc.layouts:
        for cell in layout.cells:
            value = coerce.parse_amount(cell.text, doc.decimal)
            if value is None or not MONEY_TEXT.search(cell.text):
                continue  # "613707" is a receipt number, not an amount
            if best is None or value > best.value:
                best = Candidate(value, cell, 0.45, "detector")
    return [best] if best else []
