"""Reading parameters out of one clause: percentages, intensity words, degrees, sizes,
factors, colours, directions, quoted text.

Each reader takes the clause (lower-cased, quotes still in place) and returns the value
or None when the clause does not say; the planner turns that into an operation's
parameters, and the operation's model validates them.
"""

from __future__ import annotations

import itertools
import re

from PIL import ImageColor

_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*(?:%|percent\b|per cent\b)")
_SIZE = re.compile(r"\b(\d{1,5})\s*[x×*]\s*(\d{1,5})\b")
_FACTOR = re.compile(r"(?:\b(\d+(?:\.\d+)?)\s*[x×]|\b[x×]\s*(\d+(?:\.\d+)?))(?!\s*\d)")
_DEGREES = re.compile(r"(-?\d+(?:\.\d+)?)\s*(?:°|deg\b|degrees?\b)")
_PIXELS = re.compile(r"\b(\d{1,5})\s*(?:px\b|pixels?\b|pt\b)")
_ASPECT = re.compile(r"\b(\d{1,2})\s*:\s*(\d{1,2})\b")
_QUOTED = re.compile(r"[\"“”']([^\"“”']{1,100})[\"“”']")
_NUMBER = re.compile(r"\b(\d+(?:\.\d+)?)\b")

# Intensity words -> a multiplier of the operation's default strength.
_GENTLE = (
    r"slightly|a (?:little )?bit|a little|a touch|subtly|subtle|somewhat|gently|a tad|mildly"
    r"|lightly"
)
_STRONG = (
    r"much|a lot|very|significantly|strongly|heavily|way|dramatically|greatly|really|extremely"
    r"|considerably|lots|massively"
)
_INTENSITY: tuple[tuple[re.Pattern[str], float], ...] = (
    (re.compile(rf"\b({_GENTLE})\b"), 0.5),
    (re.compile(rf"\b({_STRONG})\b"), 2.0),
)
_WORD_NUMBERS = {"two": 2, "double": 2, "twice": 2, "three": 3, "four": 4, "quadruple": 4}
_CSS = set(ImageColor.colormap)
# A few names people use that CSS lacks.
_EXTRA_COLOURS = {"off-white": "#f5f5f0", "charcoal": "#36454f", "sky blue": "skyblue"}


def percent(clause: str) -> float | None:
    """``"20%"`` → 0.2."""
    m = _PERCENT.search(clause)
    return float(m.group(1)) / 100 if m else None


def intensity(clause: str) -> float:
    """A multiplier: 0.5 for "slightly", 2 for "much", 1 otherwise."""
    for pattern, factor in _INTENSITY:
        if pattern.search(clause):
            return factor
    return 1.0


def size(clause: str) -> tuple[int, int] | None:
    """``"1024x768"`` → (1024, 768)."""
    m = _SIZE.search(clause)
    return (int(m.group(1)), int(m.group(2))) if m else None


def factor(clause: str) -> float | None:
    """``"2x"``, ``"x4"``, "double", "twice", "half" → the scale factor."""
    if _SIZE.search(clause) is None:
        m = _FACTOR.search(clause)
        if m:
            return float(m.group(1) or m.group(2))
    for word, value in _WORD_NUMBERS.items():
        if re.search(rf"\b{word}\b", clause):
            return float(value)
    if re.search(r"\bhalf\b", clause):
        return 0.5
    if re.search(r"\b(quarter|a fourth)\b", clause):
        return 0.25
    return None


def degrees(clause: str) -> float | None:
    m = _DEGREES.search(clause)
    return float(m.group(1)) if m else None


def pixels(clause: str) -> int | None:
    m = _PIXELS.search(clause)
    return int(m.group(1)) if m else None


def aspect(clause: str) -> tuple[int, int] | None:
    """``"16:9"`` → (16, 9); "square" → (1, 1)."""
    if re.search(r"\bsquare\b", clause):
        return (1, 1)
    m = _ASPECT.search(clause)
    if m and int(m.group(1)) > 0 and int(m.group(2)) > 0:
        return (int(m.group(1)), int(m.group(2)))
    return None


def number(clause: str) -> float | None:
    m = _NUMBER.search(clause)
    return float(m.group(1)) if m else None


def colour(clause: str) -> str | None:
    """The first colour named: a CSS name, a two-word name ("light blue") or ``#rrggbb``."""
    m = re.search(r"#[0-9a-f]{6}\b", clause)
    if m:
        return m.group(0)
    for name, value in _EXTRA_COLOURS.items():
        if name in clause:
            return value
    words = re.findall(r"[a-z]+", clause)
    for first, second in itertools.pairwise(words):
        if first + second in _CSS:
            return first + second
    for word in words:
        if word in _CSS and word not in {"tan", "linen"}:  # too often ordinary words
            return word
    return None


def quoted(original: str) -> str | None:
    """Text in quotes, case kept (a watermark's wording)."""
    m = _QUOTED.search(original)
    return m.group(1).strip() if m else None


def position(clause: str) -> str | None:
    vertical = "top" if "top" in clause else "bottom" if "bottom" in clause else None
    horizontal = "left" if "left" in clause else "right" if "right" in clause else None
    if vertical and horizontal:
        return f"{vertical}-{horizontal}"
    if re.search(r"\b(centre|center|middle)\b", clause):
        return "center"
    return None


def negative(clause: str, words: str) -> bool:
    """Whether the clause asks for less (``words`` is a regex alternation)."""
    return re.search(rf"\b({words})\b", clause) is not None
