"""The rule planner: a prompt becomes a plan of catalogue operations.

1. The prompt is split into clauses ("make it 20% brighter, then remove the
   background" → two), on punctuation and joining words, keeping quoted text and
   "black and white" whole.
2. Each clause is matched to one operation: first by rules (keyword patterns, most
   specific first), then, when none fires and an embedder is given, by MiniLM cosine
   similarity to the catalogue's example phrasings. A clause below the threshold is
   reported in ``Plan.unsupported``, never guessed.
3. The operation's parameters are read from the clause (see :mod:`.params`) and
   validated by its model.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from visionserve.models.edit import params as p
from visionserve.models.edit.catalogue import OPERATIONS
from visionserve.models.edit.plan import MAX_STEPS, Plan, Step

if TYPE_CHECKING:
    from visionserve.models.embedding import Embedder

log = logging.getLogger(__name__)

#: Lowest cosine similarity to an example phrasing that counts as a match.
MATCH_THRESHOLD = 0.62
#: Longest prompt read (characters); the rest is ignored.
MAX_PROMPT_CHARS = 2000

_SPLIT = re.compile(
    r"\s*(?:[;\n]|\.(?=\s|$)|,(?!\d)|\bthen\b|\bafter that\b|\bafterwards\b|\bfinally\b|\balso\b"
    r"|\bplus\b|&|\bas well as\b|\s+and\s+)\s*",
    re.IGNORECASE,
)
_FILLER = re.compile(
    r"^(?:please|pls|kindly|could you|can you|would you|i want you to|i want to|i'd like to"
    r"|i would like to|i'd like|i want|go ahead and|just|and|also|then|now|lastly|first(?:ly)?"
    r"|next|finally|and then)\b\s*",
)
_IGNORABLE = re.compile(
    r"^(?:please|thanks|thank you|cheers|for me|that's all|that is all|ok|okay|and|it|the image"
    r"|the photo|the picture)?$"
)
_BG = r"(?:background|backdrop|bg|back ground)"


def _has(*alternatives: str) -> Callable[[str], bool]:
    compiled = re.compile("|".join(alternatives))
    return lambda clause: compiled.search(clause) is not None


_REMOVE = r"\b(remove|erase|delete|clean|get rid of|strip|take out|take off|wipe|hide|clear)\b"
_MARKS = (
    r"\b(text|captions?|writing|watermarks?|logos?|marks?|letters|words|subtitles?"
    r"|dates?|date ?stamps?|time ?stamps?|labels?|signatures?|scribbles?)\b"
)
_PIXEL_SIZE = r"\b\d+\s*(?:px|pixels?|x\s*\d)"

# (operation, test), most specific first: "blur the faces" is faces, not blur.
_RULES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    (
        "faces",
        _has(r"\bfaces?\b", r"\bfacial\b", r"anonymi[sz]e", r"\bpeople'?s?\b.*\b(blur|pixel|hide)"),
    ),
    ("remove_text", _has(_REMOVE + ".*" + _MARKS)),
    (
        "watermark",
        _has(
            r"\bwatermark\b",
            r"\b(add|put|place|stamp|insert|overlay|write)\b.*\b(text|copyright|©|caption|signature)\b",
            r"\b(add|put|place|stamp|insert|overlay|write)\b.*[\"'“]",  # ... a quoted wording
        ),
    ),
    (
        "blur_background",
        _has(
            rf"\b(blur|blurry|soften|defocus|bokeh)\w*\b.*\b{_BG}\b",
            rf"{_BG}.*\b(blur|blurry|bokeh|out of focus)",
            r"\bbokeh\b",
            r"portrait mode",
            r"\bblur\w*\b.*\bbehind (?:it|him|her|them|the \w+)",
        ),
    ),
    (
        "remove_background",
        _has(
            r"\btransparent\b",
            rf"\b(remove|delete|erase|drop|get rid of|strip|lose|take away|cut out)\b.*\b{_BG}\b",
        ),
    ),
    (
        "replace_background",
        _has(
            rf"\b(replace|change|swap|switch|set|new|make)\b.*\b{_BG}\b",
            rf"\b{_BG}\b.*\b(to|with|into)\b",
            rf"\bon an? [#\w]+( \w+)? {_BG}\b",
        ),
    ),
    (
        "remove_background",
        _has(rf"\b{_BG}\b", r"\btransparent\b", r"\bcut ?out\b", r"\bisolate\b"),
    ),
    (
        "grayscale",
        _has(
            r"black[- ]and[- ]white",
            r"\bb ?[&/] ?w\b",
            r"gr[ae]y ?scale",
            r"monochrome",
            r"\bgr[ae]y\b",
            r"remove (?:all )?(?:the )?colou?rs?",
            r"no colou?rs?",
            r"colou?rless",
            r"fully desaturate",
        ),
    ),
    (
        "sepia",
        _has(
            r"sepia", r"vintage", r"antique", r"old[- ]?(?:photo|fashioned|timey|school)", r"retro"
        ),
    ),
    (
        "invert",
        _has(r"\binver", r"\bnegative\b", r"revers\w* (?:the )?colou?rs", r"opposite colou?rs"),
    ),
    ("format", _has(r"\b(jpe?g|png|webp)\b")),
    (
        "style",
        _has(
            r"\bstyl",
            r"painting",
            r"painted",
            r"paint it",
            r"\bartistic",
            r"\bart\b",
            r"artwork",
            r"impressionis",
            r"cartoon",
            r"\bsketch",
            r"oil paint",
            r"painterly",
            r"brush ?strokes",
            r"van gogh",
            r"picasso",
            r"monet",
        ),
    ),
    (
        "crop",
        _has(r"\bcrop", r"\btrim\b", r"cut off the (?:edges|sides|borders)", r"tighter framing"),
    ),
    (
        "upscale",
        _has(
            r"\bup-?scal",
            r"\bupsampl",
            r"super[- ]?res",
            r"(?:higher|increase|boost|improve|enhance|more)\b.*\bresolution",
            r"\bhd\b",
            r"\b4k\b",
            r"\btwice as (?:big|large)",
            r"\bhi-?res\b",
            rf"\b(enlarge|bigger|larger)\b(?!.*{_PIXEL_SIZE})",
            r"\b(double|quadruple) the (size|resolution)",
        ),
    ),
    (
        "resize",
        _has(
            r"\bresiz",
            r"\bscale\b",
            r"\bdownscal",
            r"\bshrink",
            r"\bsmaller\b",
            r"\d+\s*[x×]\s*\d+",
            r"\bthumbnail",
            r"\bhalf (?:the )?size",
            r"\b\d+\s*(?:px|pixels?)?\s*(?:wide|tall|high)\b",
            r"\bwidth\b",
            r"\bheight\b",
            r"\b(enlarge|bigger|larger)\b",
        ),
    ),
    ("pad", _has(r"\bpad", r"\bborder\b", r"\bframe\b", r"letterbox", r"\bmargin")),
    (
        "rotate",
        _has(
            r"\brotat",
            r"\bturn\b.*\b(clockwise|counter|anti|left|right|upside|sideways|around|\d+)",
            r"\btilt\b",
            r"\bstraighten",
        ),
    ),
    ("flip", _has(r"\bflip", r"\bmirror", r"upside down")),
    (
        "denoise",
        _has(
            r"denois",
            r"\bnois",
            r"\bgrain",
            r"\bspeckl",
            r"\bartifacts?\b",
            r"\bclean (?:it |this |the \w+ )?up",
        ),
    ),
    (
        "sharpen",
        _has(
            r"sharp",
            r"crisp",
            r"less blurry",
            r"\bdeblur",
            r"\bunblur",
            r"more detail",
            r"in focus",
            r"clearer",
        ),
    ),
    ("blur", _has(r"\bblur", r"\bblurry", r"out of focus", r"\bsoft(?:en|er)\b", r"\bdreamy")),
    (
        "auto_enhance",
        _has(
            r"enhanc",
            r"improve",
            r"\bfix\b",
            r"white balance",
            r"auto[- ]?(correct|contrast|level|tone)",
            r"touch ?up",
            r"look better",
            r"\bclahe\b",
            r"colou?r correct",
            r"colou?r cast",
            r"\bbetter\b",
            r"\bwashed out",
        ),
    ),
    ("contrast", _has(r"contrast", r"\bpunch", r"\bpop\b")),
    (
        "saturation",
        _has(
            r"saturat",
            r"vivid",
            r"colou?rful",
            r"vibran",
            r"\bmute",
            r"\bdull",
            r"colou?rs? (?:more|less)",
            r"intense colou?rs",
        ),
    ),
    (
        "temperature",
        _has(
            r"\bwarm",
            r"\bcooler\b",
            r"\bcool (?:it|the|down)\b",
            r"\bcool(?:er)? tones?\b",
            r"\bcold(?:er)?\b",
            r"colou?r temperature",
        ),
    ),
    (
        "brightness",
        _has(
            r"bright",
            r"\bdark",
            r"lighten",
            r"\blighter\b",
            r"\bdim\b",
            r"\bdimmer",
            r"exposure",
            r"\bexpos",
            r"\bgloomy",
            r"\bluminous",
            r"\bwhiter\b",
        ),
    ),
)
# "... in the top left corner" after an unquoted watermark text.
_POSITION_TAIL = re.compile(
    r"\s+(?:in|at|on|to|into)\s+(?:the\s+)?(?:top|bottom|centre|center|middle|upper|lower|left"
    r"|right|corner).*$",
    re.IGNORECASE,
)
_LESS = {
    "brightness": r"dark\w*|dim\w*|reduce|decrease|lower|less|down|too bright|gloomy",
    "contrast": r"reduce|decrease|lower|less|flatten|soften|softer|down|too much",
    "saturation": r"reduce|decrease|lower|less|mute\w*|desaturate|dull\w*|down|too much",
    "temperature": r"cool\w*|cold\w*|blu\w*|reduce|decrease|lower|less|down",
}


def split_clauses(prompt: str) -> list[str]:
    """The prompt's clauses, quoted text kept whole, fillers removed, case kept."""
    quotes: list[str] = []

    def hide(m: re.Match[str]) -> str:
        quotes.append(m.group(0))
        return f"\x00{len(quotes) - 1}\x00"

    text = re.sub(
        r"[\"“][^\"”]{0,100}[\"”]|'[^']{1,100}'(?!\w)|\bblack\s+and\s+white\b",
        hide,
        prompt[:MAX_PROMPT_CHARS],
        flags=re.IGNORECASE,
    )
    clauses = []
    for part in _SPLIT.split(text):
        part = re.sub(r"\x00(\d+)\x00", lambda m: quotes[int(m.group(1))], part or "").strip()
        while True:
            stripped = _FILLER.sub("", part.lower())
            if stripped == part.lower():
                break
            part = part[len(part) - len(stripped) :].strip()
        if part and not _IGNORABLE.match(part.lower().strip(" !?")):
            clauses.append(part)
    return clauses


def rule_match(clause: str) -> str | None:
    """The first operation whose rule fires on the (lower-cased) clause."""
    for op, test in _RULES:
        if test(clause):
            return op
    return None


def read_params(op: str, original: str) -> dict[str, Any]:
    """The parameters the clause states for ``op`` (the rest take the model's defaults)."""
    c = original.lower()
    k = p.intensity(c)
    out: dict[str, Any] = {}
    if op in ("brightness", "contrast", "saturation", "temperature"):
        less = _LESS[op]
        share = p.percent(c)
        f = p.factor(c)
        if share is not None:
            amount = share
        elif f is not None and f != 0.5 and re.search(r"\b(as|times)\b", c):
            amount = f - 1  # "twice as bright"
        elif f == 0.5 and re.search(r"\bhalf as\b", c):
            amount = -0.5
        else:
            amount = 0.2 * k
        # "less dark" and "too dark" ask for more light; "not bright enough" too.
        relieved = re.search(r"\b(less|not so|not as|too) (dark|dim|gloomy|dull|flat)", c)
        out["amount"] = -abs(amount) if p.negative(c, less) and not relieved else abs(amount)
    elif op == "sharpen":
        out["amount"] = 1.0 * k
    elif op == "blur":
        px = p.pixels(c)
        out["radius"] = float(px) if px else 3.0 * k
    elif op == "blur_background":
        px = p.pixels(c)
        out["radius"] = float(px) if px else 12.0 * k
    elif op == "denoise":
        out["strength"] = 7.0 * k
    elif op == "upscale":
        f = p.factor(c)
        out["factor"] = 4 if f is not None and f >= 3 else 2
    elif op == "resize":
        out.update(_resize_params(c))
    elif op == "crop":
        out.update(_crop_params(c))
    elif op == "pad":
        asp = p.aspect(c)
        if asp:
            out["aspect"] = asp
        else:
            out["pixels"] = p.pixels(c) or int(20 * k)
        out["color"] = p.colour(c) or "white"
    elif op == "replace_background":
        out["color"] = p.colour(c) or "white"
    elif op == "rotate":
        out["degrees"] = _rotation(c)
    elif op == "flip":
        vertical = re.search(r"vertical|upside|top to bottom|up ?side|up and down", c)
        out["direction"] = "vertical" if vertical else "horizontal"
    elif op == "format":
        fmt = re.search(r"\b(jpe?g|png|webp)\b", c)
        out["format"] = (
            "jpeg" if fmt and fmt.group(1).startswith("j") else (fmt.group(1) if fmt else "png")
        )
        q = re.search(r"quality\D{0,4}(\d{1,3})", c)
        if q:
            out["quality"] = min(100, max(1, int(q.group(1))))
    elif op == "style":
        n = re.search(r"\bstyle\s*(?:#|no\.?|number)?\s*(\d{1,2})\b|#(\d{1,2})\b", c)
        if n:
            out["style"] = int(n.group(1) or n.group(2))
        share = p.percent(c)
        out["strength"] = share if share is not None and share <= 1 else (0.5 if k < 1 else 1.0)
    elif op == "faces":
        out["mode"] = "pixelate" if re.search(r"pixel|mosaic|censor", c) else "blur"
    elif op == "watermark":
        text = p.quoted(original)
        if text is None:
            m = re.search(
                r"\b(?:saying|says|reading|reads|with the text|text|that says)\s+(.+)$",
                original,
                re.I,
            )
            text = (
                _POSITION_TAIL.sub("", m.group(1)).strip(" '\"")
                if m
                else ("©" if "copyright" in c or "©" in c else "")
            )
        out["text"] = text[:100]
        out["position"] = p.position(c) or "bottom-right"
    return out


def _rotation(c: str) -> float:
    if re.search(r"upside|\baround\b|half ?turn", c):
        return 180.0
    deg = p.degrees(c)
    if deg is None:
        n = p.number(c)
        deg = n if n is not None and 0 < n <= 360 else 90.0
    if re.search(r"counter|anti|\bleft\b|ccw", c):
        deg = -abs(deg)
    return deg


def _resize_params(c: str) -> dict[str, Any]:
    wh = p.size(c)
    if wh:
        return {"width": wh[0], "height": wh[1]}
    w = re.search(r"(\d{1,5})\s*(?:px|pixels?)?\s*(?:wide|in width)|width\D{0,8}(\d{1,5})", c)
    if w:
        return {"width": int(w.group(1) or w.group(2))}
    h = re.search(
        r"(\d{1,5})\s*(?:px|pixels?)?\s*(?:tall|high|in height)|height\D{0,8}(\d{1,5})", c
    )
    if h:
        return {"height": int(h.group(1) or h.group(2))}
    share = p.percent(c)
    if share is not None:
        return {"factor": share}
    f = p.factor(c)
    if f is not None:
        return {"factor": f}
    px = p.pixels(c)
    if px:
        return {"width": px}  # "resize to 800 pixels": the width, aspect kept
    return {"factor": 2.0 if re.search(r"bigger|larger|enlarge|up\b", c) else 0.5}


def _crop_params(c: str) -> dict[str, Any]:
    wh = p.size(c)
    if wh:
        return {"mode": "size", "width": wh[0], "height": wh[1]}
    asp = p.aspect(c)
    if asp:
        return {"mode": "aspect", "aspect": asp}
    if re.search(r"edges?|sides|borders?|margins?|trim|\d+\s*%", c) and not re.search(
        r"subject|object|product|person|around", c
    ):
        share = p.percent(c)
        return {"mode": "margin", "margin": min(share, 0.45) if share is not None else 0.1}
    return {"mode": "subject"}


_BACKGROUND_OPS = frozenset({"remove_background", "replace_background"})
_REMOVAL = re.compile(
    r"transparen|\b(remove|delete|erase|drop|get rid|strip|lose|knock|cut ?out|isolate|only keep"
    r"|plain|solid|blank|no|without|behind the subject)\b"
)
_NEW_BACKGROUND = re.compile(
    r"\b(add|put|place|set|change|replace|swap|switch|give|with|to|into|on)\b"
)


def names_a_scene(clause: str) -> bool:
    """A background clause that asks for a new scene ("put it on a beach background").

    A colour, or words of removal ("transparent", "solid", "get rid of"), are what the
    local engine does; anything else put behind the subject is a picture to generate.
    """
    c = clause.lower()
    if p.colour(c) is not None or _REMOVAL.search(c):
        return False
    return _NEW_BACKGROUND.search(c) is not None


class Planner:
    """Rules first, then MiniLM similarity to example phrasings.

    Args:
        embedder: all-MiniLM-L6-v2 (see :class:`visionserve.models.embedding.Embedder`);
            None: rules only (a clause no rule matches is unsupported).
        threshold: Lowest cosine similarity that counts as a match.
    """

    def __init__(self, embedder: Embedder | None = None, *, threshold: float = MATCH_THRESHOLD):
        self.embedder = embedder
        self.threshold = threshold
        self._example_ops: list[str] = []
        self._example_vecs: np.ndarray | None = None
        if embedder is not None:
            texts = []
            for op in OPERATIONS.values():
                for example in op.examples:
                    self._example_ops.append(op.name)
                    texts.append(example)
            self._example_vecs = np.asarray(embedder.embed(texts), dtype=np.float32)

    def match(self, clause: str) -> tuple[str | None, float, str]:
        """The operation for one clause, a confidence and how it was found."""
        op = rule_match(clause.lower())
        if op is not None:
            return op, 1.0, "rule"
        if self.embedder is None or self._example_vecs is None:
            return None, 0.0, "none"
        vec = np.asarray(self.embedder.embed([clause.lower()])[0], dtype=np.float32)
        scores = self._example_vecs @ vec
        best = int(np.argmax(scores))
        score = float(scores[best])
        if score < self.threshold:
            return None, score, "embedding"
        return self._example_ops[best], score, "embedding"

    def plan(self, prompt: str) -> Plan:
        """The plan for ``prompt``: matched clauses become steps, the rest unsupported."""
        steps: list[Step] = []
        unsupported: list[str] = []
        previous_verb = ""
        for clause in split_clauses(prompt):
            op, score, how = self.match(clause)
            verb = re.match(
                r"(remove|erase|delete|add|make|crop|rotate|flip|blur|convert)\b", clause, re.I
            )
            if op is None and previous_verb:
                # "remove the text and logos": the second clause borrows the first's verb.
                op, score, how = self.match(f"{previous_verb} {clause}")
            if verb:
                previous_verb = verb.group(1).lower()
            if op is None:
                log.debug("unsupported clause %r (best %.2f)", clause, score)
                unsupported.append(clause)
                continue
            if op in _BACKGROUND_OPS and names_a_scene(clause):
                # "a sunset background" needs a generative model: never a guessed colour.
                log.debug("background scene %r is not a local operation", clause)
                unsupported.append(clause)
                continue
            step = Step(op=op, params=read_params(op, clause))
            if steps and steps[-1] == step:
                continue  # said twice ("remove the bg, make it transparent")
            if len(steps) >= MAX_STEPS:
                unsupported.append(clause)
                continue
            log.debug("clause %r -> %s (%s %.2f)", clause, op, how, score)
            steps.append(step)
        return Plan(steps=steps, unsupported=unsupported)
