"""The summary table of ``var/bench/results.json`` (``python -m bench._report``).

``make bench`` runs it last; ``--reset`` empties the file (``make bench`` runs that first).
Exits non-zero when ``--strict`` is given and a figure missed its goal.
"""

from __future__ import annotations

import argparse
import sys

from bench._util import RESULTS, load, reset


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def table(entries: list[dict]) -> str:  # type: ignore[type-arg]
    head = ("bench", "figure", "value", "baseline", "unit", "ratio", "goal", "pass", "load")
    rows = [
        (
            e["bench"],
            e["name"],
            _num(e["value"]),
            _num(e["baseline"]),
            e["unit"],
            _num(e["ratio"]),
            e["goal"] or "",
            {True: "PASS", False: "FAIL", None: ""}[e["pass"]],
            f"{e['load_1m']:.1f}",
        )
        for e in entries
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    rule = "  ".join("-" * w for w in widths)
    header = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    return "\n".join([header, rule, *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reset", action="store_true", help="empty the results file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()
    if args.reset:
        reset()
        return
    entries = load()
    print(f"{len(entries)} figures in {RESULTS} (load: 1-minute load average when measured)")
    if entries:
        print(table(entries))
    failed = [e for e in entries if e["pass"] is False]
    if failed:
        print(f"{len(failed)} figure(s) missed their goal: " + ", ".join(e["name"] for e in failed))
    if args.strict and failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
