"""Scoring a set of forecasts the same way for every model: the test table and its tests.

A report is plain JSON: ``n``, one ``{qlike, rmse, mae, r2}`` per model, the Diebold-Mariano
tests of ``model`` against HAR and ``har_seasonal`` on per-origin QLIKE, and the QLIKE of each
model per volatility regime (terciles of the trailing 24 h RV, known at the origin).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainer.metrics import REGIMES, diebold_mariano, qlike_losses, regimes, score

MODEL = "model"
DM_AGAINST = ("persistence", "ewma", "har", "har_seasonal")


def build_report(
    y: np.ndarray,
    preds: dict[str, np.ndarray],
    biases: dict[str, float],
    level: np.ndarray,
) -> dict[str, Any]:
    """The report of every model in ``preds`` (log-RV forecasts) against realized ``y``.

    >>> y = np.log(np.array([1.0, 2.0, 1.5, 1.2, 3.0, 0.8]))
    >>> r = build_report(y, {"model": y, "har": y * 0.5}, {"model": 1.0, "har": 1.0}, y)
    >>> r["n"], r["model"]["qlike"], r["dm"]["har"]["stat"] < 0
    (6, 0.0, True)
    """
    out: dict[str, Any] = {"n": len(y)}
    for name, yhat in preds.items():
        out[name] = score(y, yhat, biases[name])
    losses = {name: qlike_losses(y, yhat, biases[name]) for name, yhat in preds.items()}
    if MODEL in losses:
        out["dm"] = {
            other: diebold_mariano(losses[MODEL], losses[other])
            for other in DM_AGAINST
            if other in losses
        }
    labels = regimes(level)
    out["regimes"] = {
        regime: {"n": int(np.sum(labels == regime))}
        | {name: float(np.mean(loss[labels == regime])) for name, loss in losses.items()}
        for regime in REGIMES
        if np.any(labels == regime)
    }
    return out


def improvement(report: dict[str, Any], other: str, model: str = MODEL) -> float:
    """Relative QLIKE improvement of ``model`` over ``other`` (0.15 = 15% lower loss).

    >>> improvement({"model": {"qlike": 0.17}, "har": {"qlike": 0.2}}, "har")
    0.15
    """
    return round(1.0 - report[model]["qlike"] / report[other]["qlike"], 12)


def table(report: dict[str, Any]) -> str:
    """The test table as aligned text: one line per model, with its gain over HAR in QLIKE."""
    names = [k for k, v in report.items() if isinstance(v, dict) and "qlike" in v]
    lines = [f"{'model':<14}{'qlike':>9}{'rmse':>9}{'mae':>9}{'r2':>9}{'vs har':>9}"]
    for name in names:
        m = report[name]
        gain = f"{improvement(report, 'har', name):+.1%}" if "har" in report else ""
        lines.append(
            f"{name:<14}{m['qlike']:>9.4f}{m['rmse']:>9.4f}{m['mae']:>9.4f}{m['r2']:>9.4f}{gain:>9}"
        )
    for other, dm in report.get("dm", {}).items():
        lines.append(f"DM model vs {other}: stat {dm['stat']:+.2f}, p {dm['p_value']:.2g}")
    return "\n".join(lines)
