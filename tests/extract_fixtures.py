"""Generated invoices and receipts with ground truth, for the extract engine's tests and bench.

Content comes from faker in six locales (EN, DE, FR, NL, ES, IT), each with its own
labels, date format and decimal convention. Four visually different template
families lay it out:

* ``classic``: label-right meta block, ruled table with a grid, totals bottom right;
* ``modern``: meta labels above their values in a row, unruled table, thin rules;
* ``letterhead``: the issuer only as a large brand line at the top and a legal
  footer; ``Label: value`` meta lines; a table under one header rule;
* ``receipt``: a narrow till slip in a monospace font, items as lines ending in an
  amount (some ``2 x 3.50``), no customer and no due date;
* ``sidebar``: the issuer and client in a coloured sidebar, right-aligned labels, a
  timesheet-style table (item, hours, rate, line total), ``Invoice #N`` title.

Each document comes as a digital PDF (text layer), a rendered image (the PDF
rasterised, no text layer) or a degraded scan (rotated up to ±2°, blurred, noisy,
JPEG artefacts). :data:`TUNING_FAMILIES` are the ones the engine was tuned on;
:data:`HELD_OUT_FAMILIES` are for reporting only.

Run as a script to write samples: ``python -m tests.extract_fixtures OUT_DIR``.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np
import pymupdf
from faker import Faker
from PIL import Image, ImageFilter

Family = Literal["classic", "modern", "letterhead", "receipt", "sidebar"]
Variant = Literal["digital", "rendered", "scanned"]
FAMILIES: tuple[Family, ...] = ("classic", "modern", "letterhead", "receipt", "sidebar")
#: Families the engine was developed against (looked at, fixed for).
TUNING_FAMILIES: tuple[Family, ...] = ("classic", "modern", "letterhead", "receipt")
#: Never looked at while developing the engine: only the bench reports on it.
HELD_OUT_FAMILIES: tuple[Family, ...] = ("sidebar",)
LANGUAGES = ("en", "de", "fr", "nl", "es", "it")

#: The schema every generated document answers (compact form).
INVOICE_SCHEMA: dict[str, Any] = {
    "vendor": "string",
    "invoice_number": "string",
    "invoice_date": "date",
    "due_date": "date",
    "currency": "string",
    "subtotal": "number",
    "tax": "number",
    "total": "number",
    "customer": "string",
    "line_items": [
        {"description": "string", "quantity": "number", "unit_price": "number", "amount": "number"}
    ],
}


@dataclass(frozen=True)
class Locale:
    faker: str
    title: str
    number: str
    date: str
    due: str
    bill_to: str
    description: str
    quantity: str
    unit_price: str
    amount: str
    subtotal: str
    tax: str
    total: str
    tax_rate: int
    decimal: str
    thousands: str
    months: tuple[str, ...]
    receipt_title: str


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_EN_MONTHS = _words(
    "January February March April May June July August September October November December"
)
LOCALES: dict[str, Locale] = {
    "en": Locale(
        "en_US",
        "INVOICE",
        "Invoice No.",
        "Invoice Date",
        "Due Date",
        "Bill To",
        "Description",
        "Qty",
        "Unit Price",
        "Amount",
        "Subtotal",
        "Tax",
        "Total Due",
        8,
        ".",
        ",",
        tuple(_EN_MONTHS),
        "RECEIPT",
    ),
    "de": Locale(
        "de_DE",
        "RECHNUNG",
        "Rechnungsnummer",
        "Rechnungsdatum",
        "Fällig am",
        "Rechnung an",
        "Beschreibung",
        "Menge",
        "Einzelpreis",
        "Betrag",
        "Zwischensumme",
        "MwSt.",
        "Gesamtbetrag",
        19,
        ",",
        ".",
        tuple(
            _words(
                "Januar Februar März April Mai Juni Juli August September Oktober November Dezember"
            )
        ),
        "KASSENBON",
    ),
    "fr": Locale(
        "fr_FR",
        "FACTURE",
        "N° de facture",
        "Date de facture",
        "Date d'échéance",
        "Facturé à",
        "Désignation",
        "Quantité",
        "Prix unitaire",
        "Montant",
        "Total HT",
        "TVA",
        "Total TTC",
        20,
        ",",
        " ",
        tuple(
            _words(
                "janvier février mars avril mai juin "
                "juillet août septembre octobre novembre décembre"
            )
        ),
        "TICKET",
    ),
    "nl": Locale(
        "nl_NL",
        "FACTUUR",
        "Factuurnummer",
        "Factuurdatum",
        "Vervaldatum",
        "Factuur aan",
        "Omschrijving",
        "Aantal",
        "Prijs",
        "Bedrag",
        "Subtotaal",
        "BTW",
        "Totaal",
        21,
        ",",
        ".",
        tuple(
            _words(
                "januari februari maart april mei juni "
                "juli augustus september oktober november december"
            )
        ),
        "KASSABON",
    ),
    "es": Locale(
        "es_ES",
        "FACTURA",
        "Número de factura",
        "Fecha",
        "Fecha de vencimiento",
        "Cliente",
        "Descripción",
        "Cantidad",
        "Precio unitario",
        "Importe",
        "Base imponible",
        "IVA",
        "Total",
        21,
        ",",
        ".",
        tuple(
            _words(
                "enero febrero marzo abril mayo junio "
                "julio agosto septiembre octubre noviembre diciembre"
            )
        ),
        "TICKET",
    ),
    "it": Locale(
        "it_IT",
        "FATTURA",
        "Numero fattura",
        "Data fattura",
        "Scadenza",
        "Cliente",
        "Descrizione",
        "Quantità",
        "Prezzo unitario",
        "Importo",
        "Imponibile",
        "IVA",
        "Totale",
        22,
        ",",
        ".",
        tuple(
            _words(
                "gennaio febbraio marzo aprile maggio giugno "
                "luglio agosto settembre ottobre novembre dicembre"
            )
        ),
        "SCONTRINO",
    ),
}

_PRODUCTS = [
    "Consulting services",
    "Website hosting (annual)",
    "Office chair",
    "Laptop stand",
    "Software licence",
    "Printer paper A4",
    "Maintenance contract",
    "Design workshop",
    "Cloud storage 1 TB",
    "Training session",
    "USB-C cable",
    "Project management",
    "Translation services",
    "Coffee beans 1 kg",
    "Desk lamp",
    "Travel expenses",
]
_LONG = [
    "Implementation of the customer portal including data migration and testing",
    "Quarterly maintenance of the network infrastructure and security updates",
]
_RECEIPT_ITEMS = [
    "Milk 1L",
    "Bread",
    "Apples",
    "Coffee",
    "Butter",
    "Cheese",
    "Pasta",
    "Tomatoes",
    "Water 6x1.5L",
    "Chocolate",
    "Yoghurt",
    "Orange juice",
    "Eggs 10",
    "Rice 1kg",
]


@dataclass
class GeneratedDoc:
    """One generated document and what it says."""

    family: Family
    language: str
    variant: Variant
    data: bytes  # PDF, PNG or JPEG bytes
    truth: dict[str, Any]
    seed: int
    pages: int = 1
    meta: dict[str, Any] = field(default_factory=dict)


# --- content -------------------------------------------------------------------------


def make_truth(family: Family, language: str, rng: random.Random) -> dict[str, Any]:
    """The facts of one invoice (or receipt): parties, dates, items and sums."""
    fake = Faker(LOCALES[language].faker)
    fake.seed_instance(rng.randrange(1 << 30))
    receipt = family == "receipt"
    vendor = fake.company()
    if language == "en" and not any(s in vendor for s in ("Inc", "LLC", "Ltd", "Group", "PLC")):
        vendor = f"{vendor} {rng.choice(['Inc.', 'LLC', 'Ltd'])}"
    issued = date(2023, 1, 1) + timedelta(days=rng.randrange(900))
    n_items = rng.randint(2, 6) if receipt else rng.randint(1, 5)
    items = []
    for i in range(n_items):
        if receipt:
            description = rng.choice(_RECEIPT_ITEMS)
            quantity = rng.choice([1, 1, 1, 2, 3])
            unit = round(rng.uniform(0.5, 12), 2)
        else:
            description = (
                rng.choice(_LONG) if (i == 0 and rng.random() < 0.3) else rng.choice(_PRODUCTS)
            )
            quantity = rng.choice([1, 1, 2, 3, 5, 10, 12])
            unit = round(rng.uniform(5, 1500), 2)
        items.append(
            {
                "description": description,
                "quantity": quantity,
                "unit_price": unit,
                "amount": round(quantity * unit, 2),
            }
        )
    subtotal = round(sum(i["amount"] for i in items), 2)
    rate = LOCALES[language].tax_rate
    tax = round(subtotal * rate / 100, 2)
    currency = "EUR" if language != "en" else rng.choice(["USD", "GBP"])
    prefix = {"classic": "INV", "modern": "IN", "letterhead": "F", "receipt": "", "sidebar": "S"}[
        family
    ]
    number = (
        f"{prefix}-{issued.year}-{rng.randint(1, 9999):04d}"
        if not receipt
        else f"{rng.randint(100000, 999999)}"
    )
    if receipt:
        # A till slip prints quantity and unit price only for more than one unit.
        for item in items:
            if item["quantity"] == 1:
                item["quantity"] = item["unit_price"] = None
    return {
        "vendor": vendor,
        "invoice_number": number,
        "invoice_date": issued.isoformat(),
        "due_date": None
        if receipt
        else (issued + timedelta(days=rng.choice([14, 30]))).isoformat(),
        "currency": currency,
        "subtotal": subtotal,
        "tax": tax,
        "total": round(subtotal + tax, 2),
        "customer": None if receipt else fake.name(),
        "line_items": items,
        "_extra": {
            "vendor_address": fake.address().replace("\n", ", "),
            "customer_address": fake.address().replace("\n", ", "),
            "email_user": rng.choice(["info", "billing", "accounts", "hello"]),
            "phone": fake.phone_number(),
            "rate": rate,
        },
    }


def fmt_amount(value: float, language: str, currency: str | None = None) -> str:
    loc = LOCALES[language]
    whole, cents = f"{abs(value):,.2f}".split(".")
    text = whole.replace(",", loc.thousands) + loc.decimal + cents
    if value < 0:
        text = "-" + text
    if currency is None:
        return text
    symbol = {"USD": "$", "GBP": "£", "EUR": "€"}[currency]
    if language == "en":
        return symbol + text
    if language == "nl":
        return f"{symbol} {text}"
    return f"{text} {symbol}"


def fmt_date(iso: str, language: str, currency: str, long: bool) -> str:
    d = date.fromisoformat(iso)
    loc = LOCALES[language]
    month = loc.months[d.month - 1]
    us = language == "en" and currency == "USD"
    if long:
        if us:
            return f"{month} {d.day}, {d.year}"
        if language == "de":
            return f"{d.day}. {month} {d.year}"
        if language == "es":
            return f"{d.day} de {month} de {d.year}"
        return f"{d.day} {month} {d.year}"
    if us:
        return f"{d.month:02d}/{d.day:02d}/{d.year}"
    sep = {"de": ".", "nl": "-"}.get(language, "/")
    return f"{d.day:02d}{sep}{d.month:02d}{sep}{d.year}"


def fmt_qty(value: float, language: str) -> str:
    return str(int(value)) if float(value).is_integer() else fmt_amount(value, language)


# --- drawing -------------------------------------------------------------------------


class _Canvas:
    def __init__(self, width: float, height: float, mono: bool = False) -> None:
        self.doc = pymupdf.open()
        self.page = self.doc.new_page(width=width, height=height)
        self.regular = pymupdf.Font("cour" if mono else "helv")
        self.bold = pymupdf.Font("cobo" if mono else "hebo")

    def text(
        self,
        x: float,
        y: float,
        text: str,
        size: float = 9.5,
        *,
        bold: bool = False,
        align: str = "left",
        colour: tuple[float, float, float] = (0, 0, 0),
    ) -> None:
        font = self.bold if bold else self.regular
        width = font.text_length(text, fontsize=size)
        if align == "right":
            x -= width
        elif align == "center":
            x -= width / 2
        writer = pymupdf.TextWriter(self.page.rect, color=colour)
        writer.append((x, y), text, font=font, fontsize=size)
        writer.write_text(self.page)

    def width_of(self, text: str, size: float = 9.5) -> float:
        return float(self.regular.text_length(text, fontsize=size))

    def line(self, x0: float, y0: float, x1: float, y1: float, width: float = 0.6) -> None:
        self.page.draw_line((x0, y0), (x1, y1), color=(0, 0, 0), width=width)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: tuple[float, ...]) -> None:
        self.page.draw_rect(pymupdf.Rect(x0, y0, x1, y1), color=None, fill=fill)

    def pdf(self) -> bytes:
        data: bytes = self.doc.tobytes(deflate=True)
        self.doc.close()
        return data


def _wrap(canvas: _Canvas, text: str, width: float, size: float) -> list[str]:
    lines, current = [], ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if canvas.width_of(trial, size) > width and current:
            lines.append(current)
            current = word
        else:
            current = trial
    return [*lines, current] if current else lines


def _items_table(
    c: _Canvas,
    t: dict[str, Any],
    lang: str,
    y: float,
    *,
    ruled: bool,
    grid: bool,
    x0: float = 50,
    x1: float = 545,
) -> float:
    loc = LOCALES[lang]
    # Description left-aligned; quantity, unit price and amount right-aligned.
    cols = [x0 + 6, x0 + 280, x0 + 305, x1 - 6]
    qty_right = x0 + 285
    head_y = y
    if grid:
        c.rect(x0, y - 12, x1, y + 5, fill=(0.88, 0.88, 0.88))
    c.text(cols[0], y, loc.description, bold=True)
    c.text(qty_right, y, loc.quantity, bold=True, align="right")
    c.text(cols[2] + 75, y, loc.unit_price, bold=True, align="right")
    c.text(cols[3], y, loc.amount, bold=True, align="right")
    if ruled:
        c.line(x0, y + 5, x1, y + 5)
    y += 20
    row_tops = [head_y - 12]
    for item in t["line_items"]:
        desc_lines = _wrap(c, item["description"], 215, 9.5)
        c.text(cols[0], y, desc_lines[0])
        c.text(qty_right, y, fmt_qty(item["quantity"], lang), align="right")
        c.text(cols[2] + 75, y, fmt_amount(item["unit_price"], lang), align="right")
        c.text(cols[3], y, fmt_amount(item["amount"], lang), align="right")
        for extra in desc_lines[1:]:
            y += 12
            c.text(cols[0], y, extra)
        row_tops.append(y + 6)
        y += 18
    if grid:
        bottom = row_tops[-1]
        for top in row_tops:
            c.line(x0, top, x1, top)
        c.line(x0, head_y + 5, x1, head_y + 5)
        for x in (x0, x0 + 232, x0 + 292, x0 + 386, x1):
            c.line(x, head_y - 12, x, bottom)
    elif ruled:
        c.line(x0, y - 12, x1, y - 12)
    return y


def _totals(
    c: _Canvas,
    t: dict[str, Any],
    lang: str,
    y: float,
    *,
    label_x: float,
    value_x: float,
    size: float = 9.5,
) -> float:
    loc = LOCALES[lang]
    cur = t["currency"]
    rate = t["_extra"]["rate"]
    rows = [
        (loc.subtotal, fmt_amount(t["subtotal"], lang, cur), False),
        (f"{loc.tax} {rate}%", fmt_amount(t["tax"], lang, cur), False),
        (loc.total, fmt_amount(t["total"], lang, cur), True),
    ]
    for label, value, bold in rows:
        c.text(label_x, y, label, size, bold=bold)
        c.text(value_x, y, value, size, bold=bold, align="right")
        y += 16
    return y


def _classic(t: dict[str, Any], lang: str, rng: random.Random) -> bytes:
    loc = LOCALES[lang]
    c = _Canvas(595, 842)
    cur = t["currency"]
    long = rng.random() < 0.4
    c.text(50, 70, t["vendor"], 15, bold=True)
    for i, part in enumerate(t["_extra"]["vendor_address"].split(", ")[:2]):
        c.text(50, 88 + 12 * i, part, 9)
    c.text(545, 70, loc.title, 20, bold=True, align="right")
    meta = [
        (f"{loc.number}:", t["invoice_number"]),
        (f"{loc.date}:", fmt_date(t["invoice_date"], lang, cur, long)),
        (f"{loc.due}:", fmt_date(t["due_date"], lang, cur, long)),
    ]
    for i, (label, value) in enumerate(meta):
        c.text(330, 140 + 15 * i, label, 9.5, bold=True)
        c.text(440, 140 + 15 * i, value, 9.5)
    c.text(50, 140, f"{loc.bill_to}:", 9.5, bold=True)
    c.text(50, 155, t["customer"], 9.5)
    for i, part in enumerate(t["_extra"]["customer_address"].split(", ")[:2]):
        c.text(50, 168 + 12 * i, part, 9)
    y = _items_table(c, t, lang, 250, ruled=True, grid=True)
    _totals(c, t, lang, y + 20, label_x=360, value_x=545)
    domain = t["vendor"].split()[0].strip(",").lower()
    c.text(50, 800, f"{t['_extra']['email_user']}@{domain}.com · {t['_extra']['phone']}", 8)
    return c.pdf()


def _modern(t: dict[str, Any], lang: str, rng: random.Random) -> bytes:
    loc = LOCALES[lang]
    c = _Canvas(595, 842)
    cur = t["currency"]
    long = rng.random() < 0.5
    c.text(60, 80, loc.title.title(), 26, bold=True, colour=(0.2, 0.3, 0.5))
    c.text(540, 70, t["vendor"], 11, bold=True, align="right")
    for i, part in enumerate(t["_extra"]["vendor_address"].split(", ")[:2]):
        c.text(540, 84 + 11 * i, part, 8.5, align="right")
    c.line(60, 120, 540, 120, 0.4)
    heads = [loc.number, loc.date, loc.due]
    values = [
        t["invoice_number"],
        fmt_date(t["invoice_date"], lang, cur, long),
        fmt_date(t["due_date"], lang, cur, long),
    ]
    for i, (head, value) in enumerate(zip(heads, values, strict=True)):
        c.text(60 + 160 * i, 145, head, 8.5, colour=(0.4, 0.4, 0.4))
        c.text(60 + 160 * i, 159, value, 10.5, bold=True)
    c.text(60, 200, loc.bill_to, 8.5, colour=(0.4, 0.4, 0.4))
    c.text(60, 214, t["customer"], 10.5, bold=True)
    c.text(60, 227, t["_extra"]["customer_address"].split(", ")[0], 9)
    y = _items_table(c, t, lang, 280, ruled=True, grid=False, x0=60, x1=540)
    y = _totals(c, t, lang, y + 24, label_x=360, value_x=540)
    return c.pdf()


def _letterhead(t: dict[str, Any], lang: str, rng: random.Random) -> bytes:
    loc = LOCALES[lang]
    c = _Canvas(595, 842)
    cur = t["currency"]
    long = rng.random() < 0.5
    # The issuer as a brand: large, centred, without its legal form.
    brand = t["vendor"].split(",")[0].split(" ")[0].upper()
    c.rect(0, 0, 595, 8, fill=(0.1, 0.4, 0.3))
    c.text(297, 62, brand, 28, bold=True, align="center", colour=(0.1, 0.4, 0.3))
    c.text(297, 80, t["_extra"]["vendor_address"], 8, align="center")
    c.text(60, 130, t["customer"], 10)
    for i, part in enumerate(t["_extra"]["customer_address"].split(", ")[:2]):
        c.text(60, 143 + 12 * i, part, 9)
    c.text(60, 210, f"{loc.title.title()} {t['invoice_number']}", 14, bold=True)
    c.text(60, 232, f"{loc.number}: {t['invoice_number']}", 9.5)
    c.text(60, 246, f"{loc.date}: {fmt_date(t['invoice_date'], lang, cur, long)}", 9.5)
    c.text(60, 260, f"{loc.due}: {fmt_date(t['due_date'], lang, cur, long)}", 9.5)
    y = _items_table(c, t, lang, 300, ruled=True, grid=False, x0=60, x1=540)
    _totals(c, t, lang, y + 18, label_x=340, value_x=540)
    domain = brand.lower()
    c.line(60, 780, 540, 780, 0.4)
    c.text(297, 795, f"{t['vendor']} · {t['_extra']['vendor_address']}", 7.5, align="center")
    c.text(297, 806, f"www.{domain}.com · {t['_extra']['phone']}", 7.5, align="center")
    return c.pdf()


def _receipt(t: dict[str, Any], lang: str, rng: random.Random) -> bytes:
    loc = LOCALES[lang]
    n = len(t["line_items"])
    height = 330 + 14 * n
    c = _Canvas(230, height, mono=True)
    cur = t["currency"]
    mid, left, right = 115, 12, 218
    c.text(mid, 30, t["vendor"], 9, bold=True, align="center")
    address = t["_extra"]["vendor_address"].split(", ")
    for i, part in enumerate(address[:2]):
        c.text(mid, 43 + 10 * i, part[:34], 7, align="center")
    c.text(mid, 75, loc.receipt_title, 9, bold=True, align="center")
    c.text(left, 95, f"{loc.date}: {fmt_date(t['invoice_date'], lang, cur, False)}", 7.5)
    c.text(left, 106, f"No: {t['invoice_number']}", 7.5)
    y = 130.0
    for item in t["line_items"]:
        amount = fmt_amount(item["amount"], lang)
        if item["quantity"] is not None:
            c.text(left, y, item["description"], 7.5)
            y += 11
            c.text(
                left + 10, y, f"{item['quantity']} x {fmt_amount(item['unit_price'], lang)}", 7.5
            )
        else:
            c.text(left, y, item["description"], 7.5)
        c.text(right, y, amount, 7.5, align="right")
        y += 13
    c.text(left, y, "-" * 34, 7.5)
    y += 14
    y = _totals(c, t, lang, y, label_x=left, value_x=right, size=7.5)
    c.text(
        mid,
        y + 16,
        {
            "en": "Thank you!",
            "de": "Vielen Dank!",
            "fr": "Merci !",
            "nl": "Bedankt!",
            "es": "¡Gracias!",
            "it": "Grazie!",
        }[lang],
        7.5,
        align="center",
    )
    return c.pdf()


_SIDEBAR_HEADS = {
    "en": ("Item", "Hours", "Rate", "Line Total", "Client", "Issued", "Payment due", "Balance Due"),
    "de": ("Leistung", "Stunden", "Satz", "Summe", "Kunde", "Datum", "Zahlbar bis", "Zu zahlen"),
    "fr": ("Article", "Heures", "Taux", "Total", "Client", "Date", "Échéance", "Net à payer"),
    "nl": ("Artikel", "Uren", "Tarief", "Totaal", "Klant", "Datum", "Vervaldatum", "Te betalen"),
    "es": ("Concepto", "Horas", "Tarifa", "Total", "Cliente", "Fecha", "Vencimiento", "Total"),
    "it": ("Articolo", "Ore", "Tariffa", "Totale", "Cliente", "Data", "Scadenza", "Totale"),
}


def _sidebar(t: dict[str, Any], lang: str, rng: random.Random) -> bytes:
    """A coloured sidebar with the issuer; labels right-aligned against their values."""
    loc = LOCALES[lang]
    item, hours, rate, line_total, client, issued, due, balance = _SIDEBAR_HEADS[lang]
    c = _Canvas(595, 842)
    cur = t["currency"]
    long = rng.random() < 0.5
    c.rect(0, 0, 170, 842, fill=(0.93, 0.95, 0.98))
    c.text(20, 60, t["vendor"], 10.5, bold=True)
    for i, part in enumerate(t["_extra"]["vendor_address"].split(", ")[:3]):
        c.text(20, 76 + 11 * i, part, 8)
    domain = "".join(ch for ch in t["vendor"].split()[0].lower() if ch.isalnum())
    c.text(20, 130, f"{t['_extra']['email_user']}@{domain}.example", 8)
    c.text(20, 141, t["_extra"]["phone"], 8)
    c.text(20, 200, client.upper(), 7.5, colour=(0.4, 0.4, 0.4))
    c.text(20, 213, t["customer"], 9.5, bold=True)
    c.text(20, 225, t["_extra"]["customer_address"].split(", ")[0][:30], 8)
    c.text(200, 70, f"{loc.title} #{t['invoice_number']}", 17, bold=True)
    meta = [(issued, t["invoice_date"]), (due, t["due_date"])]
    for i, (label, value) in enumerate(meta):
        c.text(330, 110 + 14 * i, label, 9, align="right", colour=(0.4, 0.4, 0.4))
        c.text(345, 110 + 14 * i, fmt_date(value, lang, cur, long), 9)
    y = 260.0
    c.text(200, y, item, 9, bold=True)
    c.text(400, y, hours, 9, bold=True, align="right")
    c.text(480, y, rate, 9, bold=True, align="right")
    c.text(560, y, line_total, 9, bold=True, align="right")
    y += 8
    c.line(200, y, 560, y, 0.8)
    y += 16
    for row in t["line_items"]:
        lines = _wrap(c, row["description"], 170, 9)
        c.text(200, y, lines[0], 9)
        c.text(400, y, fmt_qty(row["quantity"], lang), 9, align="right")
        c.text(480, y, fmt_amount(row["unit_price"], lang), 9, align="right")
        c.text(560, y, fmt_amount(row["amount"], lang), 9, align="right")
        for extra in lines[1:]:
            y += 11
            c.text(200, y, extra, 9)
        y += 17
    c.line(200, y - 8, 560, y - 8, 0.4)
    y += 10
    rows = [
        (loc.subtotal, t["subtotal"]),
        (f"{loc.tax} ({t['_extra']['rate']}%)", t["tax"]),
        (balance, t["total"]),
    ]
    for label, value in rows:
        c.text(470, y, label, 9, align="right", bold=label == balance)
        c.text(560, y, fmt_amount(value, lang, cur), 9, align="right", bold=label == balance)
        y += 15
    return c.pdf()


_BUILDERS = {
    "classic": _classic,
    "modern": _modern,
    "letterhead": _letterhead,
    "receipt": _receipt,
    "sidebar": _sidebar,
}


# --- images and scans ----------------------------------------------------------------


def rasterise(pdf: bytes, dpi: int = 150) -> Image.Image:
    doc = pymupdf.open(stream=pdf, filetype="pdf")
    pix = doc[0].get_pixmap(dpi=dpi, alpha=False)
    img = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
    doc.close()
    return img


def degrade(img: Image.Image, rng: random.Random) -> Image.Image:
    """A scan of a printout: slight rotation, blur, noise, grey paper, JPEG."""
    angle = rng.uniform(-2.0, 2.0)
    img = img.rotate(
        angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(250, 250, 248)
    )
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.9)))
    arr = np.asarray(img, dtype=np.float32)
    noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, rng.uniform(4, 9), arr.shape)
    arr = np.clip(arr * 0.94 + 8 + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def encode(img: Image.Image, fmt: str, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, quality=quality) if fmt == "JPEG" else img.save(buf, fmt)
    return buf.getvalue()


def generate(
    family: Family, language: str, variant: Variant = "digital", seed: int = 0
) -> GeneratedDoc:
    """One document of a family, in a language, as a digital PDF, image or scan."""
    rng = random.Random(f"{family}-{language}-{seed}")
    truth = make_truth(family, language, rng)
    pdf = _BUILDERS[family](truth, language, rng)
    if variant == "digital":
        data = pdf
    elif variant == "rendered":
        data = encode(rasterise(pdf, 150), "PNG")
    else:
        scan = degrade(rasterise(pdf, 200), rng)
        data = encode(scan, "JPEG", quality=rng.randint(55, 75))
    public = {k: v for k, v in truth.items() if not k.startswith("_")}
    return GeneratedDoc(family, language, variant, data, public, seed)


def corpus(
    families: tuple[Family, ...] = FAMILIES,
    languages: tuple[str, ...] = LANGUAGES,
    variant: Variant = "digital",
    per_pair: int = 1,
    start: int = 0,
) -> list[GeneratedDoc]:
    """Documents for every family × language pair (``per_pair`` seeds each)."""
    return [
        generate(f, lang, variant, seed)
        for f in families
        for lang in languages
        for seed in range(start, start + per_pair)
    ]


if __name__ == "__main__":
    import json
    import sys
    from pathlib import Path

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "var/extract-samples")
    out.mkdir(parents=True, exist_ok=True)
    for fam in FAMILIES:
        for lang in LANGUAGES[:3]:
            for var in ("digital", "scanned"):
                d = generate(fam, lang, var)  # type: ignore[arg-type]
                ext = "pdf" if var == "digital" else "jpg"
                (out / f"{fam}-{lang}-{var}.{ext}").write_bytes(d.data)
                (out / f"{fam}-{lang}.json").write_text(json.dumps(d.truth, indent=1))
    print(out)
