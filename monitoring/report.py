"""``volstream report``: PNG plots of the key series, read from Prometheus's HTTP API.

For people who would rather look than read: latency, drift, predicted vs realized volatility and
the dead-letter queue, one PNG each, with the alert thresholds drawn.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from monitoring.targets import PROMETHEUS_PORT
from services.common.settings import REPO_ROOT

DEFAULT_URL = f"http://127.0.0.1:{PROMETHEUS_PORT}"


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``15m``, ``6h`` or ``2d``.

    >>> parse_duration("15m"), parse_duration("2h"), parse_duration("45")
    (900.0, 7200.0, 45.0)
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def build_reports(
    url: str, since_s: float, out: Path, end: float | None = None
) -> dict[Path, dict[str, int]]:
    """Query every panel of every report and write the PNGs; returns series counts per panel."""
    from monitoring import plots
    from monitoring.promapi import PromClient

    end = end or time.time()
    start, step = end - since_s, max(since_s / 300, 1.0)
    client = PromClient(url)
    written: dict[Path, dict[str, int]] = {}
    try:
        for stem, (title, _) in plots.REPORTS.items():
            data = [
                plots.PanelData(
                    panel,
                    [
                        (q, s)
                        for q in panel.queries
                        for s in client.query_range(q.expr, start, end, step)
                    ],
                )
                for panel in plots.panels_of(stem)
            ]
            path = plots.render_figure(title, data, out / f"{stem}.png")
            written[path] = {d.panel.title: len(d.series) for d in data}
    finally:
        client.close()
    return written


def report(
    prometheus: Annotated[str, typer.Option(help="Prometheus base URL")] = DEFAULT_URL,
    since: Annotated[str, typer.Option(help="how far back: 30m, 6h, 2d")] = "1h",
    out: Annotated[Path, typer.Option(help="directory for the PNGs")] = REPO_ROOT
    / "var"
    / "report",
) -> None:
    """Render PNG plots of latency, drift, predicted vs realized and the DLQ from Prometheus."""
    from monitoring.promapi import PrometheusError

    try:
        written = build_reports(prometheus, parse_duration(since), out)
    except PrometheusError as exc:
        typer.echo(f"cannot read Prometheus at {prometheus}: {exc}", err=True)
        raise typer.Exit(1) from exc
    for path, counts in written.items():
        empty = [title for title, n in counts.items() if n == 0]
        note = f"  (no data: {', '.join(empty)})" if empty else ""
        typer.echo(f"{path}{note}")


def register(app: typer.Typer) -> None:
    """Adds ``volstream report``."""
    app.command("report")(report)
