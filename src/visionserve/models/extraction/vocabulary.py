"""What invoice and receipt fields are called, in English, German, French, Dutch,
Spanish and Italian, and which concept a schema field stands for.

A *concept* is a field the engine knows how to look for (the issuer, the total,
a line item's quantity). :func:`concept_for` maps a schema field to one from its
name and description: fuzzy matching against each concept's field-name spellings,
then MiniLM similarity when an embedder is given. Fields that map to no concept
are looked for by their own name words as labels.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Protocol

from rapidfuzz import fuzz, process


class TextEmbedder(Protocol):
    """What the matcher needs from ``models.embedding.Embedder``."""

    def embed(self, texts: list[str]) -> list[list[float]]: ...


@dataclass(frozen=True)
class Concept:
    """A field the engine knows: its field-name spellings and its document labels."""

    name: str
    kind: str  # the value type it looks for: text, id, date, amount, integer, currency
    field_names: tuple[str, ...]
    labels: tuple[str, ...]
    description: str


def _split(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split("|") if s.strip())


CONCEPTS: dict[str, Concept] = {
    c.name: c
    for c in [
        Concept(
            "vendor",
            "text",
            _split(
                "vendor|vendor name|supplier|supplier name|seller|merchant|merchant name|"
                "company|company name|issuer|from|store|store name|business|biller|shop"
            ),
            _split(
                "vendor|supplier|seller|from|issued by|merchant|"
                "lieferant|verkäufer|anbieter|rechnungssteller|von|"
                "fournisseur|vendeur|émetteur|emetteur|de la part de|"
                "leverancier|verkoper|van|"
                "proveedor|vendedor|emisor|"
                "fornitore|venditore|emittente|da"
            ),
            "the company that issued the invoice or receipt (seller, supplier)",
        ),
        Concept(
            "customer",
            "text",
            _split(
                "customer|customer name|client|client name|buyer|bill to|billed to|"
                "recipient|sold to|ship to|purchaser|account name"
            ),
            _split(
                "bill to|billed to|customer|client|sold to|buyer|invoice to|"
                "kunde|rechnungsempfänger|rechnung an|empfänger|käufer|"
                "client|facturé à|facture à|destinataire|acheteur|"
                "klant|factuur aan|afnemer|koper|"
                "cliente|facturar a|facturado a|comprador|"
                "cliente|fatturare a|intestatario|destinatario|spett.le"
            ),
            "the customer the invoice is addressed to (bill to)",
        ),
        Concept(
            "invoice_number",
            "id",
            _split(
                "invoice number|invoice no|invoice id|invoice|number|receipt number|"
                "receipt no|bill number|document number|reference|invoice ref|ref"
            ),
            _split(
                "invoice number|invoice no|invoice no.|invoice #|invoice nr|inv no|invoice id|"
                "no|no.|nr|nr.|n°|nº|#|"
                "receipt no|receipt number|receipt #|bill no|document no|"
                "rechnungsnummer|rechnungs-nr|rechnungs-nr.|rechnung nr|rechnung nr.|beleg-nr|"
                "belegnummer|bon-nr|"
                "numéro de facture|numero de facture|facture n°|n° de facture|n° facture|"
                "facture no|ticket n°|"
                "factuurnummer|factuurnr|factuurnr.|factuur nr|bonnummer|"
                "número de factura|numero de factura|factura n.º|factura nº|nº factura|"
                "n.º factura|ticket nº|"
                "numero fattura|numero della fattura|fattura n.|fattura n|n. fattura|"
                "scontrino n."
            ),
            "the invoice or receipt number (identifier)",
        ),
        Concept(
            "invoice_date",
            "date",
            _split(
                "invoice date|date|issue date|date of issue|issued|receipt date|"
                "transaction date|billing date|document date|purchase date"
            ),
            _split(
                "invoice date|date|date of issue|issue date|issued|issued on|receipt date|"
                "rechnungsdatum|datum|belegdatum|ausstellungsdatum|"
                "date de facture|date de facturation|date|date d'émission|"
                "factuurdatum|datum|"
                "fecha|fecha de factura|fecha de emisión|fecha de emision|"
                "data fattura|data|data di emissione|data della fattura"
            ),
            "the date the invoice was issued",
        ),
        Concept(
            "due_date",
            "date",
            _split("due date|payment due|due|pay by|payment date|due on|deadline"),
            _split(
                "due date|payment due|due|pay by|due on|payment due date|"
                "fälligkeitsdatum|fällig am|fällig|zahlbar bis|zahlungsziel|"
                "date d'échéance|date d'echeance|échéance|echeance|à payer avant le|"
                "vervaldatum|te betalen voor|uiterste betaaldatum|"
                "fecha de vencimiento|vencimiento|fecha de pago|"
                "data di scadenza|scadenza|pagamento entro"
            ),
            "the date payment is due",
        ),
        Concept(
            "currency",
            "currency",
            _split("currency|currency code|ccy"),
            _split("currency|währung|devise|monnaie|valuta|moneda|divisa"),
            "the currency of the amounts (ISO code)",
        ),
        Concept(
            "subtotal",
            "amount",
            _split(
                "subtotal|sub total|net amount|net total|amount before tax|total net|"
                "net|total excluding tax|total before tax"
            ),
            _split(
                "subtotal|sub-total|sub total|net amount|net total|total excl. tax|"
                "total before tax|amount before tax|"
                "zwischensumme|nettobetrag|summe netto|netto|gesamt netto|nettosumme|"
                "sous-total|sous total|total ht|montant ht|total hors taxes|"
                "subtotaal|totaal excl. btw|totaal exclusief btw|netto bedrag|"
                "subtotal|base imponible|importe neto|"
                "subtotale|imponibile|totale imponibile"
            ),
            "the amount before tax",
        ),
        Concept(
            "tax",
            "amount",
            _split("tax|tax amount|vat|vat amount|sales tax|gst|total tax|taxes"),
            _split(
                "tax|vat|sales tax|gst|tax amount|vat amount|"
                "mwst|mwst.|ust|ust.|mehrwertsteuer|umsatzsteuer|zzgl. mwst|"
                "tva|montant tva|montant de la tva|"
                "btw|btw bedrag|"
                "iva|impuesto|cuota iva|"
                "iva|imposta|importo iva"
            ),
            "the tax amount (VAT, sales tax)",
        ),
        Concept(
            "total",
            "amount",
            _split(
                "total|total amount|amount due|grand total|amount|balance due|total due|"
                "amount payable|total price|invoice total|sum|total paid"
            ),
            _split(
                "total|amount due|balance due|total due|grand total|total amount|"
                "amount payable|invoice total|total to pay|"
                "gesamtbetrag|gesamtsumme|summe|rechnungsbetrag|zu zahlen|endbetrag|"
                "gesamt|gesamt brutto|bruttobetrag|"
                "total ttc|montant ttc|montant total|net à payer|net a payer|total à payer|"
                "totaal|te betalen|totaalbedrag|totaal incl. btw|totaal inclusief btw|"
                "total|importe total|total a pagar|"
                "totale|importo totale|totale da pagare|totale fattura"
            ),
            "the total amount to pay, tax included",
        ),
        Concept(
            "email",
            "text",
            _split("email|e-mail|email address|mail"),
            _split("email|e-mail|mail|courriel"),
            "an email address",
        ),
        Concept(
            "phone",
            "text",
            _split("phone|telephone|phone number|tel|mobile"),
            _split("phone|tel|tel.|telephone|téléphone|telefon|telefoon|teléfono|telefono"),
            "a telephone number",
        ),
        Concept(
            "iban",
            "text",
            _split("iban|bank account|account number"),
            _split("iban|bank account|konto|compte|rekening|cuenta|conto"),
            "an IBAN bank account",
        ),
        Concept(
            "vat_id",
            "text",
            _split("vat id|vat number|tax id|vat no|tax number|ust id"),
            _split(
                "vat id|vat no|vat number|tax id|ust-idnr|ust-idnr.|ust-id|"
                "n° tva|tva intracommunautaire|btw-nummer|btw nr|nif|cif|partita iva|p.iva"
            ),
            "a VAT or tax identification number",
        ),
        # Line item columns.
        Concept(
            "description",
            "text",
            _split("description|item|name|product|article|service|details|designation"),
            _split(
                "description|item|items|product|article|service|details|activity|"
                "beschreibung|bezeichnung|artikel|leistung|position|tätigkeit|"
                "description|désignation|designation|article|libellé|"
                "omschrijving|artikel|product|"
                "descripción|descripcion|concepto|artículo|"
                "descrizione|articolo|prodotto"
            ),
            "what a line item is",
        ),
        Concept(
            "quantity",
            "number",
            _split("quantity|qty|count|units|number of items|amount of items"),
            _split(
                "quantity|qty|qty.|units|hours|hrs|"
                "menge|anzahl|stk|stück|stunden|std.|"
                "quantité|quantite|qté|qte|heures|"
                "aantal|hoeveelheid|uren|"
                "cantidad|cant.|horas|"
                "quantità|quantita|qtà|q.tà|ore"
            ),
            "how many units of a line item",
        ),
        Concept(
            "unit_price",
            "amount",
            _split("unit price|price|rate|unit cost|price per unit|unit amount"),
            _split(
                "unit price|price|rate|unit cost|price/unit|hourly rate|"
                "einzelpreis|preis|e-preis|stückpreis|satz|stundensatz|"
                "prix unitaire|prix unit.|prix|p.u.|taux|taux horaire|"
                "prijs|stukprijs|eenheidsprijs|tarief|uurtarief|"
                "precio unitario|precio|p. unitario|tarifa|"
                "prezzo unitario|prezzo|prezzo unit.|tariffa"
            ),
            "the price of one unit of a line item",
        ),
        Concept(
            "amount",
            "amount",
            _split("amount|line total|total|price total|line amount|sum|net"),
            _split(
                "amount|total|line total|subtotal|"
                "betrag|gesamt|summe|gesamtpreis|"
                "montant|total|"
                "bedrag|totaal|"
                "importe|total|"
                "importo|totale"
            ),
            "the total of a line item (quantity times unit price)",
        ),
    ]
}

#: Concepts a line item's fields map to; the rest are document-level.
ITEM_CONCEPTS = frozenset({"description", "quantity", "unit_price", "amount"})

#: Labels that end the line items table (sums, taxes).
STOP_LABELS: tuple[str, ...] = (
    CONCEPTS["subtotal"].labels + CONCEPTS["tax"].labels + CONCEPTS["total"].labels
)

#: Document titles: never an issuer's name.
TITLES = frozenset(
    {
        "invoice",
        "tax invoice",
        "receipt",
        "bill",
        "sales receipt",
        "credit note",
        "rechnung",
        "quittung",
        "kassenbon",
        "beleg",
        "kassenbeleg",
        "facture",
        "reçu",
        "recu",
        "ticket",
        "ticket de caisse",
        "factuur",
        "kassabon",
        "bon",
        "factura",
        "recibo",
        "ticket de compra",
        "fattura",
        "ricevuta",
        "scontrino",
    }
)

#: Legal forms that end a company name.
LEGAL_FORMS = re.compile(
    r"\b(?:GmbH|AG|KG|OHG|UG|e\.K\.|Ltd\.?|Limited|LLC|L\.L\.C\.|Inc\.?|Corp\.?|Co\.|PLC|LLP|"
    r"S\.A\.S?\.?|SAS|SARL|S\.à r\.l\.|SA|SE|B\.V\.|BV|N\.V\.|NV|VOF|S\.L\.|SL|S\.L\.U\.|"
    r"S\.r\.l\.|Srl|S\.p\.A\.|SpA|S\.n\.c\.|S\.a\.s\.|S\.Com\.|S\.Coop\.|S\.L\.L\.|"
    r"GbR|KGaA|mbH|and Sons|& Co\.?|& Zn\.?|e figli|e Hijos|y asociados|Group|Partners)"
    r"(?=$|[\s,.])",
)

_SPLIT_NAME = re.compile(r"[_\-\s.]+|(?<=[a-z])(?=[A-Z])")


def normalize(text: str) -> str:
    """Lower case, accents kept, punctuation at the ends and doubled spaces dropped."""
    text = unicodedata.normalize("NFC", text).casefold()
    text = re.sub(r"\s+", " ", text)
    return text.strip(" :#.*-–|\t")


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def field_words(name: str) -> str:
    """A field name as words: ``vendorName`` and ``vendor_name`` → ``vendor name``."""
    return " ".join(p for p in _SPLIT_NAME.split(name) if p).lower()


def label_score(text: str, labels: tuple[str, ...]) -> float:
    """How well a document label matches one of a concept's labels, 0..1.

    Exact matches (after normalising case, accents and end punctuation) score 1;
    near misses (OCR slips, plural, a dropped dot) score 0.6-0.88, and anything
    under 86% similar scores 0.
    """
    cleaned = _label_text(text)
    if not cleaned or len(cleaned) > 40:
        return 0.0
    plain = strip_accents(cleaned)
    exact, fuzzy = _prepared(labels)
    if plain in exact:
        return 1.0
    if len(plain) < 6:
        return 0.0  # "van" vs "vat", "facture" vs "facture à": short words must match exactly
    # One slip in a short label, a few in a long one.
    cutoff = 90 if len(plain) < 12 else 86
    found = process.extractOne(plain, fuzzy, scorer=fuzz.ratio, score_cutoff=cutoff)
    if found is None:
        return 0.0
    return min(0.88, 0.6 + (found[1] / 100 - 0.86) * 2)


@functools.lru_cache(maxsize=256)
def _prepared(labels: tuple[str, ...]) -> tuple[frozenset[str], list[str]]:
    plain = [strip_accents(normalize(label)) for label in labels]
    return frozenset(plain), [p for p in plain if len(p) >= 6]


_PERCENT = re.compile(r"\(?\s*\d+(?:[.,]\d+)?\s*%\s*\)?")


def _label_text(text: str) -> str:
    # "VAT (20%)", "MwSt. 19 %", "Total (EUR)": the rate and the currency are not the label.
    text = _PERCENT.sub(" ", text)
    text = re.sub(r"\((?:[A-Z]{3}|[€$£])\)|\b(?:in|en)\s+(?:EUR|USD|GBP)\b", " ", text)
    return normalize(text)


@dataclass(frozen=True)
class FieldTarget:
    """What the engine looks for to fill one schema field."""

    concept: str | None  # a key of CONCEPTS, or None for a field known only by its name
    labels: tuple[str, ...]
    score: float  # how sure the field -> concept mapping is


class ConceptIndex:
    """MiniLM vectors of every concept, embedded once, for names fuzzy matching misses.

    Args:
        embedder: ``models.embedding.Embedder`` (or anything with ``embed``).
    """

    #: Least cosine similarity, and least lead over the runner-up, for a match:
    #: "payment deadline" → due date (0.53, +0.23), "billed party" → customer (0.43,
    #: +0.07); "delivery date" (0.43 invoice date, +0.02) and "order number" (0.39)
    #: stay unmatched.
    MIN_SIMILARITY = 0.4
    MIN_LEAD = 0.05

    def __init__(self, embedder: TextEmbedder) -> None:
        self.embedder = embedder
        self._vectors: dict[bool, tuple[list[Concept], list[list[float]]]] = {}

    def match(self, query: str, *, item: bool) -> tuple[Concept | None, float]:
        if item not in self._vectors:
            pool = [c for c in CONCEPTS.values() if (c.name in ITEM_CONCEPTS) == item]
            texts = [f"{', '.join(c.field_names[:6])}: {c.description}" for c in pool]
            self._vectors[item] = (pool, self.embedder.embed(texts))
        pool, vectors = self._vectors[item]
        q = self.embedder.embed([query])[0]
        sims = sorted(
            ((sum(a * b for a, b in zip(q, v, strict=True)), i) for i, v in enumerate(vectors)),
            reverse=True,
        )
        (best, index), (second, _) = sims[0], sims[1]
        if best < self.MIN_SIMILARITY or best - second < self.MIN_LEAD:
            return None, 0.0
        return pool[index], 0.75


def concept_for(
    name: str,
    description: str = "",
    *,
    item: bool = False,
    index: ConceptIndex | None = None,
    instructions: str = "",
) -> FieldTarget:
    """The concept a schema field stands for.

    Args:
        name: The field's key (``vendor_name``, ``rechnungsnummer``, ``qty``).
        description: The schema's description of the field, if any.
        item: Whether the field belongs to an array's items (line item columns).
        index: MiniLM concept vectors, for names the fuzzy match does not settle.
        instructions: The pattern's instructions: a sentence of them that names the
            field is added to what the embedder reads.

    Returns:
        The concept (None when none fits) and the labels to look for.
    """
    words = field_words(name)
    pool = [c for c in CONCEPTS.values() if (c.name in ITEM_CONCEPTS) == item]
    best: tuple[float, Concept | None] = (0.0, None)
    for candidate in pool:
        spellings = (*candidate.field_names, *candidate.labels)
        score = (
            max(
                max(fuzz.ratio(words, s) for s in spellings),
                max(fuzz.token_sort_ratio(words, s) for s in spellings),
            )
            / 100
        )
        if score > best[0]:
            best = (score, candidate)
    score, concept = best
    if score < 0.86:  # "purchase order" is not "purchase date"
        concept = None
        if index is not None:
            query = words if not description else f"{words}: {description}"
            context = _mentioning(instructions, words)
            concept, score = index.match(f"{query}. {context}" if context else query, item=item)
    if concept is None:
        return FieldTarget(None, (words,), 0.5)
    return FieldTarget(concept.name, (*concept.labels, words), score)


def _mentioning(instructions: str, words: str) -> str:
    """The first sentence of the instructions that names the field."""
    if not instructions or not words:
        return ""
    for sentence in re.split(r"(?<=[.!?;])\s+|\n+", instructions):
        if words in field_words(sentence) or words.replace(" ", "_") in sentence.lower():
            return sentence.strip()[:200]
    return ""
