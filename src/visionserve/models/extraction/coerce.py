"""Typed values from document text: amounts, dates, integers, currencies.

Numbers follow the document's decimal convention (``1.234,56`` in German, French,
Dutch, Spanish and Italian invoices, ``1,234.56`` in English ones), which
:func:`decimal_mark` votes from the document's own amounts; price-parser reads each
amount with that hint. Numeric dates follow the document's date order (day first
unless the document shows otherwise); dates with month names go through dateparser
in the document's languages.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from datetime import date

from price_parser import Price

# An amount: optional sign or bracket, digits with thousands groups and decimals.
AMOUNT = re.compile(
    r"(?<![\w.,])[-−(]?\s?(?:\d{1,3}(?:[.,'\u00a0\u202f ]\d{3})+|\d+)"
    r"(?:[.,]\d{1,2})?\)?(?![\w%]|[.,]\d)"
)
_CURRENCY_SYMBOLS = {"€": "EUR", "$": "USD", "£": "GBP", "¥": "JPY", "₹": "INR", "CHF": "CHF"}
_CURRENCY_CODES = frozenset(
    {"EUR", "USD", "GBP", "CHF", "JPY", "CAD", "AUD", "SEK", "NOK", "DKK", "PLN", "CZK", "INR"}
)
_CURRENCY_RE = re.compile(r"€|\$|£|¥|₹|\b(?:" + "|".join(sorted(_CURRENCY_CODES)) + r")\b")
# Two decimals that end the number (not "05.03.2024", whose ".03" is a month).
_TWO_DECIMALS = re.compile(r"(?<!\d[.,])\d([.,])\d{2}(?![\d.,])")

DateOrder = str  # "DMY", "MDY" or "YMD"

_NUMERIC_DATE = re.compile(r"(?<!\d)(\d{1,4})([./-])(\d{1,2})\2(\d{2,4})(?!\d)")
_MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    [
        "january jan januar janv janvier januari enero ene gennaio gen",
        "february feb februar fév fev février fevrier februari febrero febbraio",
        "march mar märz maerz mars maart marzo",
        "april apr avril avr abril aprile",
        "may mai mei mayo maggio mag",
        "june jun juni juin junio giugno giu",
        "july jul juli juillet juil julio luglio lug",
        "august aug august août aout augustus ago agosto",
        "september sep sept september septembre septiembre settembre set",
        "october oct oktober okt octobre octubre ottobre ott",
        "november nov november novembre noviembre",
        "december dec dezember dez décembre decembre diciembre dic dicembre",
    ],
    start=1,
):
    for _name in _names.split():
        _MONTHS[_name] = _number
_MONTH_ALT = "|".join(sorted((re.escape(m) for m in _MONTHS), key=len, reverse=True))
# "5 January 2024", "5. Januar 2024", "5 de enero de 2024", "January 5, 2024".
_TEXT_DATE_DMY = re.compile(
    rf"(?<!\d)(\d{{1,2}})(?:\.|er|st|nd|rd|th)?\s+(?:de\s+)?({_MONTH_ALT})\.?\s+(?:de\s+)?(\d{{4}})",
    re.IGNORECASE,
)
_TEXT_DATE_MDY = re.compile(
    rf"\b({_MONTH_ALT})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})", re.IGNORECASE
)


def decimal_mark(texts: Iterable[str]) -> str:
    """The document's decimal mark, voted from amounts with two decimals.

    Args:
        texts: The document's text pieces.

    Returns:
        ``","`` or ``"."`` (the default when nothing votes).
    """
    votes = {",": 0, ".": 0}
    for text in texts:
        for match in _TWO_DECIMALS.finditer(text):
            votes[match.group(1)] += 1
    return "," if votes[","] > votes["."] else "."


def parse_amount(text: str, decimal: str = ".") -> float | None:
    """A number from an amount's text (currency symbols and codes allowed).

    Args:
        text: ``"€ 1.234,56"``, ``"$1,234.56"``, ``"(12.00)"``, ``"-3,5"``.
        decimal: The document's decimal mark.

    Returns:
        The value (negative for a minus sign or brackets), or None when the text
        holds no single amount.
    """
    if "%" in text:
        return None
    stripped = _CURRENCY_RE.sub(" ", text).strip().strip(":").strip()
    matches = list(AMOUNT.finditer(stripped))
    if len(matches) != 1:
        return None
    rest = (stripped[: matches[0].start()] + stripped[matches[0].end() :]).strip(" .:*")
    if any(c.isalnum() for c in rest):
        return None
    return _amount_value(matches[0].group(), decimal)


def _amount_value(raw: str, decimal: str) -> float | None:
    negative = raw.strip().startswith(("-", "−", "(")) and (
        not raw.strip().startswith("(") or raw.strip().endswith(")")
    )
    body = raw.strip("-−() \u00a0")
    value = Price.fromstring(body, decimal_separator=decimal).amount_float
    if value is None:
        return None
    return -value if negative else value


def find_amounts(text: str, decimal: str = ".") -> list[tuple[int, int, float]]:
    """Every amount in a text, as ``(start, end, value)``; percentages are skipped."""
    out = []
    for match in AMOUNT.finditer(text):
        if text[match.end() : match.end() + 2].strip().startswith("%"):
            continue
        value = _amount_value(match.group(), decimal)
        if value is not None:
            out.append((match.start(), match.end(), value))
    return out


def parse_integer(text: str, decimal: str = ".") -> int | None:
    """A whole number (``"3"``, ``"3,00"``, ``"1.000"`` in a comma-decimal document)."""
    value = parse_amount(text, decimal)
    if value is None or abs(value - round(value)) > 1e-9:
        return None
    return round(value)


def find_currency(text: str) -> str | None:
    """The ISO 4217 code of the first currency symbol or code in a text."""
    match = _CURRENCY_RE.search(text)
    if match is None:
        return None
    token = match.group()
    return _CURRENCY_SYMBOLS.get(token, token)


def parse_currency(text: str) -> str | None:
    """A text that is a currency (``"EUR"``, ``"€"``, ``"Währung: EUR"``) as its code."""
    return find_currency(text)


def date_order(texts: Iterable[str], default: DateOrder = "DMY") -> DateOrder:
    """The document's numeric date order, from dates that show it (a day above 12).

    Args:
        texts: The document's text pieces.
        default: The order when no date settles it (from the document's language).

    Returns:
        ``"DMY"``, ``"MDY"`` or ``"YMD"``.
    """
    votes = {"DMY": 0, "MDY": 0, "YMD": 0}
    for text in texts:
        for a, _, b, _c in _NUMERIC_DATE.findall(text):
            if len(a) == 4:
                votes["YMD"] += 1
            elif int(a) > 12 >= int(b):
                votes["DMY"] += 1
            elif int(b) > 12 >= int(a):
                votes["MDY"] += 1
    best = max(votes, key=lambda k: votes[k])
    return best if votes[best] else default


def find_dates(text: str, order: DateOrder = "DMY") -> list[tuple[int, int, str]]:
    """Every date in a text, as ``(start, end, ISO date)``."""
    out = []
    for match in _NUMERIC_DATE.finditer(text):
        iso = _numeric(match.group(1), match.group(3), match.group(4), order)
        if iso:
            out.append((match.start(), match.end(), iso))
    for match in _TEXT_DATE_DMY.finditer(text):
        iso = _ymd(match.group(3), _MONTHS.get(match.group(2).lower()), match.group(1))
        if iso:
            out.append((match.start(), match.end(), iso))
    for match in _TEXT_DATE_MDY.finditer(text):
        iso = _ymd(match.group(3), _MONTHS.get(match.group(1).lower()), match.group(2))
        if iso:
            out.append((match.start(), match.end(), iso))
    return sorted(out)


def parse_date(text: str, order: DateOrder = "DMY", languages: tuple[str, ...] = ()) -> str | None:
    """A date in a text as ``YYYY-MM-DD``.

    Numeric and month-name dates in the six languages are read by pattern; anything
    else goes to dateparser (strict: day, month and year must all be there).

    Args:
        text: The text (``"05.01.2024"``, ``"5 janvier 2024"``, ``"Jan 5, 2024"``).
        order: The document's numeric date order.
        languages: dateparser language codes to try, e.g. ``("de", "en")``; none:
            patterns only.

    Returns:
        The ISO date, or None.
    """
    found = find_dates(text, order)
    if found:
        return found[0][2]
    # Without languages dateparser would try all 200 of its locales (seconds).
    if not languages or not any(c.isdigit() for c in text) or len(text) > 40:
        return None
    return _dateparser(text.strip(), order, tuple(languages))


@functools.lru_cache(maxsize=512)
def _dateparser(text: str, order: str, languages: tuple[str, ...]) -> str | None:
    import dateparser  # imported on first use: it loads its language data (~0.5 s)

    parsed = dateparser.parse(
        text,
        languages=list(languages),
        settings={
            "DATE_ORDER": order,
            "STRICT_PARSING": True,
            "REQUIRE_PARTS": ["day", "month", "year"],
            "PREFER_LOCALE_DATE_ORDER": False,
        },
    )
    if parsed is None or not 1900 <= parsed.year <= 2100:
        return None  # "2992" is an OCR slip, not a date
    return parsed.date().isoformat()


def _numeric(a: str, b: str, c: str, order: DateOrder) -> str | None:
    if len(a) == 4:
        return _ymd(a, int(b), c)
    year = c if len(c) == 4 else ("20" + c if len(c) == 2 else "")
    if not year:
        return None
    day, month = (int(a), int(b)) if order != "MDY" else (int(b), int(a))
    if month > 12 >= day:  # the document's order does not fit this date: swap
        day, month = month, day
    return _ymd(year, month, str(day))


def _ymd(year: str, month: int | None, day: str) -> str | None:
    if month is None:
        return None
    try:
        value = date(int(year), month, int(day))
    except ValueError:
        return None
    if not 1900 <= value.year <= 2100:
        return None
    return value.isoformat()
