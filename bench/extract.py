"""Extract engine quality and speed on generated invoices and receipts.

Reports on the held-out template family (never developed against) and, apart, on
the families the engine was developed against: exact field accuracy after
normalisation (per type and overall), line-item F1 with rows matched optimally
(each pair of rows scores the share of its four fields that agree), the share of
fields with confidence >= 0.9 and their accuracy, and seconds per page for digital
PDFs, rendered images and degraded scans, next to the same pages' OCR time alone
(the baseline every OCR-based engine pays; for a digital PDF, the OCR of the same
page rendered).

    python -m bench.extract [--groups held-out,tuned] [--per-pair 2] [--variants ...] [-v]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
from collections import defaultdict
from typing import Any

from bench._util import record
from tests.extract_fixtures import (
    FAMILIES,
    HELD_OUT_FAMILIES,
    INVOICE_SCHEMA,
    LANGUAGES,
    TUNING_FAMILIES,
    Family,
    GeneratedDoc,
    corpus,
)
from visionserve.models.documents.ocr import (
    get_ocr_engine,
    invoice_languages,
    resolve_ocr_engine,
)
from visionserve.models.extraction.document import load_pages, ocr_pages
from visionserve.models.extraction.engine import Extraction, LocalExtractor
from visionserve.models.extraction.schema import ExtractionSchema

# The schema's scalar fields; line_items are scored apart (F1).
SCALARS = {k: v for k, v in INVOICE_SCHEMA.items() if isinstance(v, str)}
ITEM_FIELDS = ("description", "quantity", "unit_price", "amount")


def norm(value: Any) -> Any:
    """Values as compared: strings case- and space-insensitive, numbers to the cent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return round(float(value), 2)
    text = re.sub(r"\s+", " ", str(value)).strip(" .,:;").casefold()
    return text


def field_correct(got: Any, want: Any) -> bool:
    return norm(got) == norm(want)


def item_f1(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> tuple[float, float, float]:
    """(matched-field credit, predicted rows, true rows): rows matched optimally.

    A pair of rows scores the share of its four fields that agree; the assignment
    maximises the total (scipy's linear_sum_assignment, or greedy without scipy).
    """
    if not got or not want:
        return 0.0, float(len(got)), float(len(want))
    score = [
        [sum(field_correct(g.get(k), w.get(k)) for k in ITEM_FIELDS) / 4 for w in want] for g in got
    ]
    try:
        import numpy as np
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(-np.asarray(score))
        credit = float(sum(score[r][c] for r, c in zip(rows, cols, strict=True)))
    except ImportError:
        credit, used = 0.0, set()
        for r in range(len(got)):
            best = max(
                (c for c in range(len(want)) if c not in used),
                key=lambda c: score[r][c],
                default=None,
            )
            if best is not None:
                used.add(best)
                credit += score[r][best]
    return credit, float(len(got)), float(len(want))


class Stats:
    def __init__(self) -> None:
        self.by_type: dict[str, list[bool]] = defaultdict(list)
        self.by_field: dict[str, list[bool]] = defaultdict(list)
        self.confident: list[bool] = []
        self.calib: list[tuple[float, bool]] = []
        self.items = [0.0, 0.0, 0.0]
        self.seconds: list[float] = []
        self.ocr_seconds: list[float] = []
        self.failures: list[str] = []

    def add(self, doc: GeneratedDoc, ex: Extraction) -> None:
        for key, kind in SCALARS.items():
            ok = field_correct(ex.result.get(key), doc.truth.get(key))
            self.by_type[kind].append(ok)
            self.by_field[key].append(ok)
            conf = ex.field_metadata[key]["confidence"]
            self.calib.append((conf, ok))
            if conf >= 0.9:
                self.confident.append(ok)
            if not ok and len(self.failures) < 400:
                self.failures.append(
                    f"{doc.family}/{doc.language}/{doc.seed} {key}: got "
                    f"{ex.result.get(key)!r} want {doc.truth.get(key)!r} (conf {conf})"
                )
        credit, n_got, n_want = item_f1(ex.result.get("line_items") or [], doc.truth["line_items"])
        self.items[0] += credit
        self.items[1] += n_got
        self.items[2] += n_want

    @property
    def accuracy(self) -> float:
        flat = [v for vs in self.by_type.values() for v in vs]
        return sum(flat) / len(flat) if flat else 0.0

    @property
    def f1(self) -> float:
        credit, n_got, n_want = self.items
        if not n_got or not n_want:
            return 0.0
        p, r = credit / n_got, credit / n_want
        return 2 * p * r / (p + r) if p + r else 0.0


def run(
    docs: list[GeneratedDoc], extractor: LocalExtractor, ocr: Any, schema: ExtractionSchema
) -> Stats:
    """Extract every document, timing the whole path per page and OCR alone.

    For a digital PDF (no OCR on the path) the baseline is the OCR of the same
    page rendered: what an OCR-first pipeline pays before it has read a word.
    """
    stats = Stats()
    for doc in docs:
        start = time.perf_counter()
        pages = load_pages(doc.data, max_pages=10)
        if not all(p.words for p in pages):
            ocr_start = time.perf_counter()
            pages = ocr_pages(pages, ocr)
            stats.ocr_seconds.append((time.perf_counter() - ocr_start) / len(pages))
        ex = extractor.extract(pages, schema)
        stats.seconds.append((time.perf_counter() - start) / len(pages))
        if doc.variant == "digital":
            ocr_start = time.perf_counter()
            for page in pages:
                ocr.recognize(page.image)
            stats.ocr_seconds.append((time.perf_counter() - ocr_start) / len(pages))
        stats.add(doc, ex)
    return stats


def report(name: str, stats: Stats, *, verbose: bool) -> None:
    per_type = " ".join(f"{k} {sum(v) / len(v):.3f}" for k, v in sorted(stats.by_type.items()) if v)
    confident = stats.confident
    share = len(confident) / max(1, len(stats.calib))
    conf_acc = sum(confident) / len(confident) if confident else float("nan")
    sec = statistics.median(stats.seconds) if stats.seconds else float("nan")
    worst = max(stats.seconds, default=float("nan"))
    line = (
        f"{name:24s} {len(stats.seconds):3d}  {stats.accuracy:5.3f} ({per_type})  "
        f"F1 {stats.f1:5.3f}  conf>=0.9: {share:4.2f} of fields, {conf_acc:5.3f} correct  "
        f"s/page {sec:4.2f} (max {worst:4.2f})"
    )
    if stats.ocr_seconds:
        ocr = statistics.median(stats.ocr_seconds)
        line += f"  OCR alone {ocr:4.2f}, ratio {sec / ocr:4.2f}x"
    print(line, flush=True)
    record(f"{name} field accuracy", stats.accuracy, "share")
    record(f"{name} line-item F1", stats.f1, "F1")
    if stats.ocr_seconds:
        record(f"{name} s/page vs OCR alone", sec, "s/page", baseline=ocr)
    if verbose:
        print(
            "  per field: "
            + "  ".join(f"{k} {sum(v) / len(v):.2f}" for k, v in stats.by_field.items())
        )
        bins: dict[float, list[bool]] = defaultdict(list)
        for conf, ok in stats.calib:
            bins[min(0.9, int(conf * 10) / 10)].append(ok)
        print(
            "  calibration: "
            + "  ".join(
                f"[{b:.1f}) n={len(v)} acc={sum(v) / len(v):.2f}" for b, v in sorted(bins.items())
            )
        )
        for failure in stats.failures[:40]:
            print("   ", failure)


def _engine(name: str, psm: int) -> Any:
    if name == "auto":
        name, _ = resolve_ocr_engine(name)
    # As the shared OCR deployment reads for extract (Ocr.recognize, layout "block").
    block = {"psm": psm, "lang": invoice_languages()} if name == "tesseract" else {}
    return get_ocr_engine(name, **block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--groups",
        default="held-out,tuned",
        help="held-out (families never developed against), tuned, or family names",
    )
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    parser.add_argument("--variants", default="digital,rendered,scanned")
    parser.add_argument("--per-pair", type=int, default=2)
    parser.add_argument("--start", type=int, default=100, help="first seed (tests use 0..)")
    parser.add_argument(
        "--ocr", default=os.environ.get("VISIONSERVE_DOCUMENTS__OCR_ENGINE", "auto")
    )
    # psm 3 (tesseract's default) drops right-aligned amount columns on till slips.
    parser.add_argument("--psm", type=int, default=6, help="tesseract page segmentation mode")
    parser.add_argument(
        "--second-ocr",
        default="rapidocr",
        help="another OCR engine for the held-out scans ('' to skip)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    groups: list[tuple[str, tuple[Family, ...]]] = []
    for group in args.groups.split(","):
        if group == "held-out":
            groups.append((group, HELD_OUT_FAMILIES))
        elif group == "tuned":
            groups.append((group, TUNING_FAMILIES))
        elif group in FAMILIES:
            groups.append((group, (group,)))  # type: ignore[arg-type]
    languages = tuple(args.languages.split(","))
    schema = ExtractionSchema.parse(INVOICE_SCHEMA)
    extractor = LocalExtractor()
    ocr = _engine(args.ocr, args.psm)
    # Warm up: imports, dateparser's language data, the OCR engine's first run.
    run(corpus(("classic",), ("en",), "rendered", 1, 0), extractor, ocr, schema)
    print(
        f"extract bench: {len(languages)} languages, {args.per_pair} document(s) per family "
        f"and language, OCR {ocr.name}{' psm ' + str(args.psm) if ocr.name == 'tesseract' else ''}"
        f", {os.cpu_count()} CPUs\n"
        f"{'group / input':24s} docs field acc (per type)  line-item F1  confidence  speed"
    )
    for group, families in groups:
        for variant in args.variants.split(","):
            docs = corpus(families, languages, variant, args.per_pair, args.start)  # type: ignore[arg-type]
            label = f"{group} {variant}"
            report(label, run(docs, extractor, ocr, schema), verbose=args.verbose)
    if args.second_ocr and "scanned" in args.variants and groups:
        other = _engine(args.second_ocr, args.psm)
        group, families = groups[0]
        docs = corpus(families, languages, "scanned", args.per_pair, args.start)
        report(
            f"{group} scanned {other.name}",
            run(docs, extractor, other, schema),
            verbose=args.verbose,
        )


if __name__ == "__main__":
    main()
