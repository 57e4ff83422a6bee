"""docs/grafana-dashboard.json charts only metrics the code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import accelerated.engine
import accelerated.stream_metrics

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json"
PROMQL_WORDS = {
    "max",
    "by",
    "sum",
    "rate",
    "histogram_quantile",
    "count",
    "le",
    "stage",
    "outcome",
    "up",
    "job",
}


def test_every_metric_in_the_dashboard_is_exported() -> None:
    assert accelerated.engine.MESSAGES is not None
    exported = set()
    for metric in REGISTRY.collect():
        exported.add(metric.name)
        exported.update(s.name for s in metric.samples)
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert len(exprs) >= 8
    names = {
        w
        for e in exprs
        for w in re.findall(r"[a-z_][a-z0-9_]*", re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", e))
    } - PROMQL_WORDS
    # A labelled metric never observed has no samples yet: match its family by suffix.
    families = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in names}
    assert names and families <= exported, families - exported
