"""In CI a missing tool fails the tests that need it, naming the tool and how to install it."""

from __future__ import annotations

import os
import subprocess
import sys

from services.common.settings import REPO_ROOT

RULE_TEST = "tests/unit/monitoring/test_rules.py::test_rules_and_configs_are_valid"


def run_without_promtool(ci: bool) -> subprocess.CompletedProcess[str]:
    """The rule test with a PATH that holds only the venv (no promtool), CI set or not."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = str(REPO_ROOT / ".venv" / "bin")
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", RULE_TEST],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_promtool_fails_in_ci_and_names_it() -> None:
    out = run_without_promtool(ci=True)
    assert out.returncode == 1, out.stdout[-2000:]
    assert "1 error" in out.stdout and "CI is set and promtool not found" in out.stdout
    assert "promtool not found: install it with sudo apt-get install -y prometheus" in out.stdout


def test_missing_promtool_skips_outside_ci_and_the_summary_says_why() -> None:
    out = run_without_promtool(ci=False)
    assert out.returncode == 0, out.stdout[-2000:]
    tail = out.stdout.splitlines()[-2:]  # the count and the reason close the run
    assert tail[0] == "1 tests skipped:" and "1  promtool not found" in tail[1], tail
