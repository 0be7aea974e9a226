"""Text patterns the segment rules recognise: captions, list markers, page numbers, formulas."""

from __future__ import annotations

import re

CAPTION_RE = re.compile(
    r"^(?:fig(?:ure)?\.?|table|tab\.|chart|exhibit|plate|diagram|graph|image)\s*"
    r"[0-9IVXivx]+[a-z]?(?:[.\-][0-9]+)*\s*[:.\-–—|]",
    re.IGNORECASE,
)
_BULLETS = "•◦▪▫‣⁃∙·●○■□►▶➢✓✔*-–—"
BULLET_RE = re.compile(rf"^\s*[{re.escape(_BULLETS)}]\s+(?=\S)")
ENUM_RE = re.compile(r"^\s*\(?(?:\d{1,3}|[a-z]|[A-Z](?=\))|i{1,3}|iv|vi{0,3}|ix|x)[.)]\s+(?=\S)")
PAGE_NUMBER_RE = re.compile(r"^(?:page\s*)?[-–—]?\s*#+\s*[-–—]?(?:\s*(?:of|/)\s*#+)?$")
# Operators that make a short line a formula rather than prose.
_MATH = set("=≤≥≈≠∑∏∫√∞∂±×÷^")
_MATH_WORDS = {"sin", "cos", "tan", "log", "exp", "max", "min", "lim", "det", "sup", "inf", "arg"}
_WORDY_RE = re.compile(r"[A-Za-z]{3,}")


def normalise(text: str) -> str:
    """Lower case, single spaces, digits folded to ``#``: "Page 3 of 9" and "Page 4 of 9" agree."""
    return re.sub(r"\d+", "#", " ".join(text.lower().split()))


def looks_like_formula(text: str) -> bool:
    """A short line built from operators and symbols, with (almost) no prose words."""
    text = text.strip()
    if not text or len(text) > 80 or not any(c in _MATH for c in text):
        return False
    words = text.split()
    prose = [w for w in _WORDY_RE.findall(text) if w.lower() not in _MATH_WORDS]
    return len(prose) <= 0.2 * len(words)
