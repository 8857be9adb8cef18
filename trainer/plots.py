"""The run's PNG plots (matplotlib, headless): predicted against realized log RV over the test
window, residuals, and feature importance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from trainer.model import importance

TOP_FEATURES = 20


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def predicted_vs_realized(test: pd.DataFrame, path: Path) -> Path:
    """Realized and predicted log RV (model and HAR) over the test window."""
    when = pd.to_datetime(test["time"], unit="s")
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.plot(when, test["y"], lw=0.6, color="0.55", label="realized")
    ax.plot(when, test["model"], lw=0.8, label="model")
    if "har" in test:
        ax.plot(when, test["har"], lw=0.6, alpha=0.7, label="har")
    ax.set_ylabel("log RV, next 60 min")
    ax.legend(loc="upper right")
    return _save(fig, path)


def residuals(test: pd.DataFrame, path: Path) -> Path:
    """Model residuals over time and their histogram."""
    res = test["y"] - test["model"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]})
    a.plot(pd.to_datetime(test["time"], unit="s"), res, lw=0.5)
    a.axhline(0.0, color="k", lw=0.5)
    a.set_ylabel("realized - predicted log RV")
    b.hist(res, bins=60, orientation="horizontal")
    return _save(fig, path)


def feature_importance(booster: Any, path: Path) -> Path:
    """Top features by total gain."""
    gains = sorted(importance(booster).items(), key=lambda kv: kv[1])[-TOP_FEATURES:]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.barh([k for k, _ in gains], np.asarray([v for _, v in gains]))
    ax.set_xlabel("total gain")
    return _save(fig, path)


def save_all(fitted: Any, directory: Path) -> list[Path]:
    """Write every plot of a fitted run into ``directory``."""
    return [
        predicted_vs_realized(fitted.test, directory / "predicted_vs_realized.png"),
        residuals(fitted.test, directory / "residuals.png"),
        feature_importance(fitted.booster, directory / "feature_importance.png"),
    ]
