"""Generate the Grafana dashboards from :mod:`monitoring.panels` with grafana-foundation-sdk.

    python -m monitoring.grafana.generate   # writes monitoring/grafana/dashboards/<uid>.json

The JSON is committed; a test renders it again and fails when it differs. Alert thresholds are
drawn on the panels as dashed red lines, with the numbers taken from :mod:`monitoring.alerts`.
"""

from __future__ import annotations

import json
import string
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard

from monitoring import panels as spec

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
#: The provisioned datasource (provisioning/datasources/prometheus.yml) has this fixed uid.
DATASOURCE = dashboard.DataSourceRef(type_val="prometheus", uid="prometheus")
PANEL_HEIGHT = 8


def _thresholds(value: float | None) -> dash_b.ThresholdsConfig:
    steps = [dashboard.Threshold(color="green", value=None)]
    if value is not None:
        steps.append(dashboard.Threshold(color="red", value=value))
    return dash_b.ThresholdsConfig().mode(dashboard.ThresholdsMode.ABSOLUTE).steps(steps)


def build_panel(panel: spec.Panel, panel_id: int) -> timeseries.Panel:
    """One time-series panel; its alert threshold (if any) drawn as a dashed line."""
    threshold = spec.threshold_of(panel)
    mode = (
        common.GraphThresholdsStyleMode.DASHED
        if threshold is not None
        else common.GraphThresholdsStyleMode.OFF
    )
    builder = (
        timeseries.Panel()
        .id(panel_id)
        .title(panel.title)
        .description(panel.description)
        .datasource(DATASOURCE)
        .unit(panel.unit)
        .span(panel.width)
        .height(PANEL_HEIGHT)
        .line_width(1)
        .fill_opacity(10)
        .thresholds(_thresholds(threshold))
        .thresholds_style(common_b.GraphThresholdsStyleConfig().mode(mode))
    )
    for ref, query in zip(string.ascii_uppercase, panel.queries, strict=False):
        if query.right_axis:
            right = dashboard.DynamicConfigValue(id_val="custom.axisPlacement", value="right")
            builder.override_by_query(ref, [right])
        builder.with_target(
            prometheus.Dataquery()
            .expr(query.expr)
            .legend_format(query.legend or "__auto")
            .ref_id(ref)
            .datasource(DATASOURCE)
        )
    return builder


def build_dashboard(board: spec.Dashboard) -> dashboard.Dashboard:
    """A whole dashboard: rows of panels, UTC, refreshing every 30 s."""
    builder = (
        dash_b.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags(["volstream"])
        .timezone("utc")
        .time("now-6h", "now")
        .refresh("30s")
        .readonly()
    )
    panel_id = 1
    for row in board.rows:
        builder.with_row(dash_b.Row(row.title).id(panel_id))
        panel_id += 1
        for panel in row.panels:
            builder.with_panel(build_panel(panel, panel_id))
            panel_id += 1
    return builder.build()


def render(board: spec.Dashboard) -> str:
    """The dashboard as stable, pretty JSON text (sorted keys, trailing newline)."""
    raw = JSONEncoder(sort_keys=True).encode(build_dashboard(board))
    return json.dumps(json.loads(raw), indent=2, sort_keys=True) + "\n"


def dashboards() -> dict[Path, Callable[[], str]]:
    """Each dashboard file and the function rendering it."""
    return {DASHBOARD_DIR / f"{b.uid}.json": partial(render, b) for b in spec.DASHBOARDS}


def main() -> int:
    for path, make in dashboards().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
