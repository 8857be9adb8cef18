"""The alert rules: valid, current, unit-tested by promtool, and those tests catch broken rules.

For every alert, each threshold is raised and lowered by half and ``for:`` is doubled and halved
in a temporary copy of the rules; promtool must then fail that alert's test cases. This is what
makes the promtool tests worth trusting: a test that passes whatever the threshold proves nothing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from monitoring import generate
from monitoring.alerts import ALERTS, ALERTS_BY_NAME, RECORDINGS, Alert
from monitoring.render import render_rules
from tests.tools import require_daemons

RULES_DIR = generate.RULES_FILE.parent
TEST_FILE = RULES_DIR / "volstream.test.yml"


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def groups_checking(alert: str) -> list[dict]:
    """The promtool test groups that check ``alert``."""
    groups = yaml.safe_load(TEST_FILE.read_text())["tests"]
    return [g for g in groups if any(t["alertname"] == alert for t in g.get("alert_rule_test", []))]


def promtool_test(promtool: str, tmp: Path, alert: str, broken: Alert | None) -> str:
    """Run ``alert``'s test groups against the rules (with ``broken`` swapped in); stdout+err."""
    replace = {broken.name: broken} if broken else None
    (tmp / generate.RULES_FILE.name).write_text(render_rules(replace=replace))
    doc = yaml.safe_load(TEST_FILE.read_text())
    doc["tests"] = groups_checking(alert)
    (tmp / TEST_FILE.name).write_text(yaml.safe_dump(doc))
    proc = run([promtool, "test", "rules", TEST_FILE.name], cwd=tmp)
    return f"rc={proc.returncode}\n{proc.stdout}{proc.stderr}"


def test_committed_files_are_regenerated_unchanged() -> None:
    assert generate.stale() == [], "run `python -m monitoring.generate` and commit"


def test_rules_and_configs_are_valid(promtool: str) -> None:
    proc = run([promtool, "check", "rules", str(generate.RULES_FILE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(ALERTS) + len(RECORDINGS)} rules found" in proc.stdout
    for config in (generate.PROMETHEUS_LOCAL, generate.PROMETHEUS_COMPOSE):
        proc = run([promtool, "check", "config", str(config)])
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_unit_tests_pass(promtool: str) -> None:
    proc = run([promtool, "test", "rules", TEST_FILE.name], cwd=RULES_DIR)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    # Test groups are independent, so each alert's subset (run below, broken) passes intact too.


@pytest.mark.parametrize("alert", sorted(ALERTS_BY_NAME))
def test_every_alert_has_firing_and_quiet_cases(alert: str) -> None:
    cases = [
        t for g in groups_checking(alert) for t in g["alert_rule_test"] if t["alertname"] == alert
    ]
    assert any(t["exp_alerts"] for t in cases), f"{alert}: no firing case"
    assert any(not t["exp_alerts"] for t in cases), f"{alert}: no quiet case"


def _breakages() -> list[tuple[str, str, Alert]]:
    out = []
    for a in ALERTS:
        for key, value in a.thresholds.items():
            out.append((a.name, f"{key} x1.5", a.with_threshold(key, value * 1.5)))
            out.append((a.name, f"{key} /1.5", a.with_threshold(key, value / 1.5)))
        out.append((a.name, "for x2", a.with_for(a.for_minutes * 2)))
        out.append((a.name, "for /2", a.with_for(a.for_minutes / 2)))
    return out


@pytest.mark.parametrize(
    ("alert", "change", "broken"), _breakages(), ids=[f"{a}-{c}" for a, c, _ in _breakages()]
)
def test_promtool_tests_catch_a_broken_rule(
    promtool: str, tmp_path: Path, alert: str, change: str, broken: Alert
) -> None:
    assert broken.expr != ALERTS_BY_NAME[alert].expr or change.startswith("for")
    out = promtool_test(promtool, tmp_path, alert, broken)
    assert out.startswith("rc=1"), f"{alert} with {change} still passes its tests:\n{out}"
    assert f"alertname: {alert}" in out


def test_alertmanager_config_is_valid_and_routes_by_severity(amtool: str) -> None:
    config = generate.ROOT / "alertmanager" / "alertmanager.yml"
    proc = run([amtool, "check-config", str(config)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    severities = {a.severity for a in ALERTS}
    assert severities == {"critical", "warning"}
    for severity in severities:
        proc = run(
            [amtool, "config", "routes", "test", f"--config.file={config}", f"severity={severity}"]
        )
        assert proc.stdout.strip() == f"webhook-{severity}", proc.stdout + proc.stderr


def test_setup_script_is_idempotent_when_tools_exist(promtool: str, amtool: str) -> None:
    require_daemons()
    proc = run(["bash", str(generate.ROOT / "setup.sh")])
    assert proc.returncode == 0, proc.stderr
    assert "present" in proc.stdout
