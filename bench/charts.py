"""PNG charts of the benchmark figures (matplotlib, Agg backend: no display needed).

Two kinds, both drawn by :func:`bench.common.save`:

- :func:`summary_chart`: every figure with a numeric target, from every ``bench/results/*.json``,
  as a horizontal bar of measured / target on a log axis, with the line at 1.0 being the target.
  Green meets the target, red misses it (for ``<=`` targets, met is left of the line).
- :func:`bench_chart`: one benchmark's figures against their targets, plus the distribution (CDF)
  of any samples it saved (e.g. publish → prediction latencies next to the raw chain's).

A zero target (``== 0`` errors) has no ratio; it is drawn as ``1 + measured``, so 1.0 still
means "on target" and a miss shows how many were over.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from bench.common import Target, parse_target

CLIP = (1e-3, 1e3)
MET, MISSED = "#2e7d32", "#c62828"


def target_of(fig: Mapping[str, Any]) -> Target | None:
    """The figure's numeric target (stored fields first, else parsed from its text)."""
    if fig.get("target_op") is not None and fig.get("target_value") is not None:
        return Target(str(fig["target_op"]), float(fig["target_value"]))
    return parse_target(str(fig.get("target", "")))


def ratio(fig: Mapping[str, Any]) -> float | None:
    """Measured / target, clipped to ``CLIP``; ``1 + |measured|`` for a zero target.

    >>> ratio({"value": 966.0, "target": ">= 5,000"})
    0.1932
    >>> ratio({"value": 0, "target": "0"}), ratio({"value": 3, "target": "== 0"})
    (1.0, 4.0)
    >>> ratio({"value": 1.0, "target": ""}) is None
    True
    """
    target = target_of(fig)
    value = fig.get("value")
    if target is None or value is None or not math.isfinite(float(value)):
        return None
    if target.value == 0:
        return 1.0 + abs(float(value))
    r = float(value) / target.value
    return min(max(r, CLIP[0]), CLIP[1])


def targeted(figures: Iterable[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], float]]:
    """(figure, ratio) for each figure that has a numeric target."""
    out = []
    for fig in figures:
        r = ratio(fig)
        if r is not None:
            out.append((fig, r))
    return out


def _label(fig: Mapping[str, Any]) -> str:
    value, unit = float(fig["value"]), fig.get("unit", "")
    shown = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
    return f"{shown} {unit} (target {fig['target']})".replace("  ", " ")


def _ratio_axes(ax: Axes, rows: Sequence[tuple[str, Mapping[str, Any], float]]) -> None:
    """Horizontal bars from 1.0 to each ratio on a log axis, labelled with value and target."""
    y = np.arange(len(rows))[::-1]
    ratios = np.array([r for _, _, r in rows])
    colors = []
    for _, fig, _ in rows:
        target = target_of(fig)
        colors.append(MET if target and target.met(float(fig["value"])) else MISSED)
    ax.barh(y, ratios - 1.0, left=1.0, color=colors, height=0.6)
    ax.scatter(ratios, y, color=colors, marker="D", s=18, zorder=3)  # visible even at 1.0
    ax.set_xscale("log")
    lo, hi = min(ratios.min(), 1.0), max(ratios.max(), 1.0)
    ax.set_xlim(lo / 3, hi * 25)  # room for the value labels right of the bars
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(y, [name for name, _, _ in rows], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    for yi, (_, fig, r) in zip(y, rows, strict=True):
        ax.text(max(r, 1.0) * 1.15, yi, _label(fig), va="center", fontsize=7)
    ax.set_xlabel(
        "measured / target (log; the line at 1.0 is the target; green met, red missed; "
        "for <= targets, met is left of the line)",
        fontsize=8,
    )
    ax.grid(axis="x", which="major", alpha=0.3)


def bench_chart(
    name: str,
    figures: Sequence[Mapping[str, Any]],
    out: Path,
    series: Mapping[str, Sequence[float]] | None = None,
    unit: str = "",
    marks: Mapping[str, float] | None = None,
) -> Path | None:
    """One benchmark's chart at ``out``: measured vs target bars, then the CDF of each series
    (``marks``: labelled vertical lines, e.g. targets). None when there is nothing to draw."""
    rows = [(str(f["name"]).strip(), f, r) for f, r in targeted(figures)]
    series = {k: v for k, v in (series or {}).items() if len(v)}
    panels = [
        p for p in ("targets", "series") if (p == "targets" and rows) or (p == "series" and series)
    ]
    if not panels:
        return None
    heights = [max(1.2, 0.35 * len(rows) + 0.8) if p == "targets" else 3.2 for p in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(11, sum(heights) + 0.8), height_ratios=heights, squeeze=False
    )
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        if panel == "targets":
            _ratio_axes(ax, rows)
            ax.set_title(f"{name}: measured vs target", fontsize=10)
        else:
            _cdf_axes(ax, series, unit, marks or {})
            ax.set_title(f"{name}: distributions", fontsize=10)
    fig.tight_layout()
    return _write(fig, out)


def _cdf_axes(
    ax: Axes, series: Mapping[str, Sequence[float]], unit: str, marks: Mapping[str, float]
) -> None:
    for label, samples in series.items():
        xs = np.sort(np.asarray(samples, dtype=float))
        p50, p99 = np.percentile(xs, [50, 99])
        ys = np.arange(1, len(xs) + 1) / len(xs)
        ax.step(xs, ys, where="post", label=f"{label}: p50 {p50:,.1f}, p99 {p99:,.1f} {unit}")
    for i, (label, x) in enumerate(marks.items()):
        ax.axvline(x, color="grey", linestyle=("--", ":", "-.")[i % 3], label=label)
    if all(min(v) > 0 for v in series.values()):
        ax.set_xscale("log")
    ax.set_xlabel(unit or "value")
    ax.set_ylabel("fraction ≤ x")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def summary_chart(results: Path, out: Path) -> Path | None:
    """Every targeted figure from every ``results/*.json`` on one chart at ``out``."""
    rows: list[tuple[str, Mapping[str, Any], float]] = []
    for path in sorted(results.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        bench = str(doc.get("name", path.stem))
        for f, r in targeted(doc.get("figures", [])):
            label = str(f["name"]).strip()
            rows.append((label if label.startswith(f"{bench}:") else f"{bench}: {label}", f, r))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(13, 0.3 * len(rows) + 1.6))
    _ratio_axes(ax, rows)
    met = sum(1 for _, f, _ in rows if (t := target_of(f)) and t.met(float(f["value"])))
    ax.set_title(f"volstream benchmarks: measured vs target ({met} of {len(rows)} met)")
    fig.tight_layout()
    return _write(fig, out)


def _write(fig: Any, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
