"""The report's figures from plain data: one PNG per report, thresholds drawn, empty panels said."""

from __future__ import annotations

from pathlib import Path

from monitoring import plots
from monitoring.panels import PANELS_BY_TITLE, Query
from monitoring.promapi import Series
from monitoring.report import parse_duration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_every_report_panel_exists_and_queries_something() -> None:
    for stem in plots.REPORTS:
        for panel in plots.panels_of(stem):
            assert panel.queries, panel.title


def test_render_figure_writes_a_png_with_data_and_without(tmp_path: Path) -> None:
    t0 = 1_700_000_000.0
    drift = Series({"__name__": "data_drift_ratio"}, [(t0 + 60 * i, 0.05 * i) for i in range(6)])
    psi = [
        Series({"feature": f"f{i}"}, [(t0 + 60 * k, 0.01 * i * k) for k in range(6)])
        for i in range(20)
    ]
    data = [
        plots.PanelData(PANELS_BY_TITLE["Data drift ratio"], [(Query("d", "share"), drift)]),
        plots.PanelData(
            PANELS_BY_TITLE["PSI / own limit per feature"],
            [(Query("psi", "{{feature}}"), s) for s in psi],
        ),
        plots.PanelData(PANELS_BY_TITLE["Out-of-range values per feature"], []),
        plots.PanelData(
            PANELS_BY_TITLE["Predicted vs realized volatility"],
            [(Query("p", "predicted"), drift), (Query("e", "error", right_axis=True), drift)],
        ),
    ]
    path = plots.render_figure("Data drift", data, tmp_path / "sub" / "drift.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000


def test_durations() -> None:
    assert parse_duration("2d") == 172_800.0
    assert parse_duration("90s") == 90.0
