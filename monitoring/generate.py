"""Write every generated monitoring file, or check that the committed ones are current.

    python -m monitoring.generate           # (re)write rules, Prometheus configs, dashboards
    python -m monitoring.generate --check   # exit 1 and name the stale files

The sources of truth are Python: :mod:`monitoring.alerts` (rules and thresholds),
:mod:`monitoring.targets` (scrape jobs) and :mod:`monitoring.panels` (dashboard panels).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from monitoring import render

ROOT = Path(__file__).resolve().parent
RULES_FILE = ROOT / "prometheus" / "rules" / "volstream.rules.yml"
PROMETHEUS_LOCAL = ROOT / "prometheus" / "prometheus.yml"
PROMETHEUS_COMPOSE = ROOT / "prometheus" / "prometheus.compose.yml"


def outputs() -> dict[Path, Callable[[], str]]:
    """Each generated file and the function that renders its text."""
    from monitoring.grafana import generate as grafana

    files: dict[Path, Callable[[], str]] = {
        RULES_FILE: render.render_rules,
        PROMETHEUS_LOCAL: render.local_prometheus,
        PROMETHEUS_COMPOSE: render.compose_prometheus,
    }
    for path, dashboard in grafana.dashboards().items():
        files[path] = dashboard
    return files


def stale() -> list[Path]:
    """Generated files whose committed text differs from a fresh rendering."""
    return [p for p, make in outputs().items() if not p.exists() or p.read_text() != make()]


def write() -> list[Path]:
    """Render every file; returns those that changed."""
    changed = stale()
    for path, make in outputs().items():
        if path in changed:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(make())
    return changed


def main(argv: list[str]) -> int:
    if "--check" in argv:
        bad = stale()
        for p in bad:
            print(f"stale: {p.relative_to(ROOT.parent)} (run python -m monitoring.generate)")
        return 1 if bad else 0
    for p in write():
        print(f"wrote {p.relative_to(ROOT.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
