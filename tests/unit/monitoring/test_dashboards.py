"""The generated dashboards: valid PromQL everywhere, thresholds drawn where alerts watch, every
recording they read defined, and the issue's panels all present."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from monitoring.alerts import RECORDINGS
from monitoring.grafana.generate import DASHBOARD_DIR
from monitoring.panels import DASHBOARDS, PANELS, PANELS_BY_TITLE, threshold_of


def _json_panels() -> dict[str, dict]:
    out = {}
    for board in DASHBOARDS:
        doc = json.loads((DASHBOARD_DIR / f"{board.uid}.json").read_text())
        assert doc["uid"] == board.uid
        out.update({p["title"]: p for p in doc["panels"] if p["type"] != "row"})
    return out


def test_every_panel_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    rules = [
        {"record": f"panel:check:{i}", "expr": q.expr}
        for i, q in enumerate(q for p in PANELS for q in p.queries)
    ]
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_panels_read_only_defined_recordings() -> None:
    defined = {r.record for r in RECORDINGS}
    used = {m for p in PANELS for q in p.queries for m in re.findall(r"volstream:[\w:]+", q.expr)}
    assert used <= defined, used - defined


def test_thresholds_are_drawn_as_in_the_alert_rules() -> None:
    panels = _json_panels()
    drawn = 0
    for title, spec in PANELS_BY_TITLE.items():
        defaults = panels[title]["fieldConfig"]["defaults"]
        steps = defaults["thresholds"]["steps"]
        expected = threshold_of(spec)
        if expected is None:
            assert defaults["custom"]["thresholdsStyle"]["mode"] == "off"
            continue
        drawn += 1
        assert defaults["custom"]["thresholdsStyle"]["mode"] == "dashed"
        assert steps[-1] == {"color": "red", "value": expected}
    assert drawn >= 7


def test_the_issues_panels_exist() -> None:
    exprs = " ".join(q.expr for p in PANELS for q in p.queries)
    for metric in (
        "http_requests",  # requests per second and status codes
        "http_request_duration_seconds",  # latency p50/p95/p99
        "pipeline_latency_seconds",  # per stage
        "model_prediction_value",  # predicted against realized
        "model_live_qlike",  # live QLIKE per role
        "data_drift_ratio",
        "feature_psi",
        "feature_ood_total",
        "consumergroup_lag",  # per topic
        "dead_letters",  # DLQ by reason
        "ingestor_lag_seconds",
    ):
        assert metric in exprs, metric


def test_every_panel_has_a_unique_id_and_its_queries_a_ref_id() -> None:
    for board in DASHBOARDS:
        doc = json.loads((DASHBOARD_DIR / f"{board.uid}.json").read_text())
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids))
        for p in doc["panels"]:
            refs = [t["refId"] for t in p.get("targets", [])]
            assert len(refs) == len(set(refs)) and all(refs)
            assert all(t["datasource"]["uid"] == "prometheus" for t in p.get("targets", []))
