"""cluster/grafana/visionserve.json queries only metrics and labels that exist (no drift).

Our series must be in the metrics catalogue the code records through, with the labels
it declares; Ray Serve's must be defined by the installed Ray.
"""

from __future__ import annotations

import importlib.util
import json
import re
from functools import cache
from pathlib import Path

import pytest

from visionserve.platform.metrics import CATALOGUE

DASHBOARD = Path(__file__).resolve().parents[3] / "cluster" / "grafana" / "visionserve.json"
SERIES = re.compile(r"\bray_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_count", "_sum")
# Labels Ray adds to every series, and Prometheus' histogram bucket label.
RAY_LABELS = {"le", "Component", "NodeAddress", "SessionName", "Version", "WorkerId"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def _exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    found = []
    for panel in board["panels"]:
        found += [t["expr"] for t in panel.get("targets", [])]
    found += [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return found


def _labels(expr: str, series: str) -> set[str]:
    """Labels ``expr`` selects or groups ``series`` by."""
    labels: set[str] = set()
    for selector in re.findall(re.escape(series) + r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([a-zA-Z_]+)\s*(?:=~|!=|!~|=)", selector))
    for grouping in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels |= {g.strip() for g in grouping.split(",") if g.strip()}
    labels |= set(re.findall(r"label_values\(\s*" + re.escape(series) + r"\s*,\s*(\w+)\)", expr))
    return labels - PROMQL_WORDS


@cache
def _serve_source() -> str:
    """The installed Ray Serve's Python source, where its metrics are defined."""
    spec = importlib.util.find_spec("ray.serve")
    assert spec is not None and spec.origin is not None
    return "\n".join(p.read_text() for p in Path(spec.origin).parent.rglob("*.py"))


def _ours(series: str) -> tuple[str, str]:
    """(catalogue name, how Ray exports it) of a ``ray_visionserve_*`` series."""
    base = series.removeprefix("ray_")
    for suffix in (*SUFFIXES, "_total"):
        if base.endswith(suffix) and base.removesuffix(suffix) in CATALOGUE:
            return base.removesuffix(suffix), suffix
    return base, ""


def test_the_dashboard_is_valid_grafana_json() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "visionserve" and board["panels"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["type"] == "row" or panel["targets"], panel["title"]


@pytest.mark.parametrize("expr", _exprs())
def test_every_series_and_label_the_dashboard_queries_exists(expr: str) -> None:
    serve_source = _serve_source()
    for series in set(SERIES.findall(expr)):
        if series.startswith("ray_visionserve_"):
            name, suffix = _ours(series)
            assert name in CATALOGUE, f"{series}: no metric {name} in the catalogue"
            spec = CATALOGUE[name]
            wanted = {"counter": ("_total",), "gauge": ("",), "histogram": SUFFIXES}[spec.kind]
            assert suffix in wanted, f"{series}: a {spec.kind} is exported as {wanted}"
            unknown = _labels(expr, series) - set(spec.tags) - RAY_LABELS
            assert not unknown, f"{series}: {name} has no label {unknown} (tags: {spec.tags})"
        else:
            assert series.startswith("ray_serve_"), series
            base = series.removeprefix("ray_")
            for suffix in (*SUFFIXES, "_total"):
                base = base.removesuffix(suffix)
            # Serve names its proxy's metrics per protocol: serve_num_{protocol_name}_requests.
            template = base.replace("_http_", "_{protocol_name}_")
            assert f'"{base}"' in serve_source or f'"{template}"' in serve_source, (
                f"{series}: Ray Serve defines no metric {base}"
            )


def test_every_catalogue_metric_is_on_the_dashboard_and_in_the_readme() -> None:
    text = " ".join(_exprs())
    readme = (DASHBOARD.parents[2] / "README.md").read_text()
    for spec in CATALOGUE.values():
        assert f"ray_{spec.name}" in text, f"{spec.name} is on no panel"
        assert f"`{spec.name}`" in readme, f"{spec.name} is not documented in the README"
