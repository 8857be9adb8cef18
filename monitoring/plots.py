"""Render panels' time series to PNG with matplotlib (headless). Pure: data in, file out.

The report groups panels of :mod:`monitoring.panels` into a few figures; each panel is one axis,
its alert threshold a dashed red line, its legend templated like Grafana's:

    >>> legend("{{symbol}} {{role}} predicted", {"symbol": "BTC", "role": "champion"})
    'BTC champion predicted'
    >>> legend("", {"__name__": "up", "job": "validator"})
    'job=validator'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from monitoring.panels import PANELS_BY_TITLE, Panel, Query, threshold_of
from monitoring.promapi import Series

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: The figures of ``volstream report``: file stem -> (title, panel titles).
REPORTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "latency": (
        "Latency",
        (
            "Prediction latency p50 / p95 / p99",
            "Pipeline latency per stage",
            "Request latency p50 / p95 / p99",
        ),
    ),
    "drift": (
        "Data drift",
        ("Data drift ratio", "PSI / own limit per feature", "Out-of-range values per feature"),
    ),
    "predicted_vs_realized": (
        "Predicted vs realized volatility",
        (
            "Predicted vs realized volatility",
            "Live QLIKE: model vs HAR-seasonal baseline",
            "Live QLIKE / baseline QLIKE",
        ),
    ),
    "dlq": ("Dead-letter queue", ("Dead letters per second by reason", "Dead-letter ratio")),
}


@dataclass(frozen=True)
class PanelData:
    """A panel and the series its queries returned, each with the query it came from."""

    panel: Panel
    series: list[tuple[Query, Series]]


def legend(template: str, labels: dict[str, str]) -> str:
    """Fill ``{{label}}`` placeholders; without a template, list the labels."""
    if template and template != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    return ",".join(f"{k}={v}" for k, v in sorted(shown.items())) or labels.get("__name__", "")


def panels_of(report: str) -> list[Panel]:
    """The panels of one report figure."""
    return [PANELS_BY_TITLE[t] for t in REPORTS[report][1]]


def render_figure(title: str, data: Sequence[PanelData], path: Path) -> Path:
    """One PNG: a row per panel, time on a shared UTC axis, thresholds dashed red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(data), 1, figsize=(11, 3.2 * len(data)), sharex=True, squeeze=False
    )
    for ax, item in zip(axes[:, 0], data, strict=True):
        _draw(ax, item)
    fig.suptitle(title)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _draw(ax: Axes, item: PanelData) -> None:
    panel, right = item.panel, None
    for query, series in item.series[:12]:  # a readable legend, not 50 PSI lines
        times = [datetime.fromtimestamp(t, UTC) for t, _ in series.points]
        values = [v for _, v in series.points]
        if query.right_axis and right is None:
            right = ax.twinx()
        target = right if query.right_axis and right is not None else ax
        color = f"C{len(ax.lines) + (len(right.lines) if right else 0)}"
        target.plot(times, values, label=legend(query.legend, series.labels), color=color)  # type: ignore[arg-type]
    threshold = threshold_of(panel)
    if threshold is not None and panel.threshold:
        ax.axhline(threshold, color="red", linestyle="--", label=f"alert: {panel.threshold[0]}")
    if not item.series:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(panel.title, fontsize=10)
    ax.set_ylabel(panel.unit if panel.unit != "short" else "")
    handles, labels = ax.get_legend_handles_labels()
    if right is not None:
        more = right.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="upper left")
