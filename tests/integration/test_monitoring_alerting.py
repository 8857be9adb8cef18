"""The alert path end to end with real daemons: Prometheus evaluates the generated rules, a real
condition (a scrape target nobody serves) fires TargetDown, and Alertmanager routes it by
severity to the webhook sink. ``for:`` is shortened to 1 s in the test copy of the rules."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devstack.broker import free_port
from devstack.monitoring_stack import MonitoringStack
from monitoring.alerts import ALERTS_BY_NAME
from monitoring.promapi import PromClient
from tests.tools import require_daemons

pytestmark = [
    pytest.mark.integration,
]


@pytest.fixture(scope="module", autouse=True)
def _daemons() -> None:
    """Prometheus and Alertmanager must be installed (a failure when ``CI`` is set)."""
    require_daemons()


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_target_down_reaches_the_critical_webhook(tmp_path: Path) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    fast = {"TargetDown": ALERTS_BY_NAME["TargetDown"].with_for(1 / 60)}
    with MonitoringStack(tmp_path, {"validator": nobody}, alerts=fast) as stack:
        prom = PromClient(stack.prometheus_url)
        health = wait_for(
            lambda: (
                {t["labels"]["job"]: t["health"] for t in prom.targets()}
                if all(t["health"] != "unknown" for t in prom.targets())
                else None
            ),
            30,
            "both targets scraped",
        )
        assert health == {"prometheus": "up", "alertmanager": "up", "validator": "down"}
        assert {r["name"] for r in prom.rules()} >= set(ALERTS_BY_NAME)

        def delivered():
            return [
                (n["path"], a["labels"])
                for n in stack.notifications()
                for a in n["body"]["alerts"]
                if a["status"] == "firing"
            ]

        (path, labels), *_ = wait_for(delivered, 60, "TargetDown at the webhook")
        assert path == "/alerts/critical"
        assert labels["alertname"] == "TargetDown"
        assert labels["job"] == "validator" and labels["instance"] == nobody
        assert labels["severity"] == "critical"
        prom.close()
