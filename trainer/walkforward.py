"""``volstream evaluate --walk-forward``: the champion recipe and its baselines re-trained and
scored quarter by quarter.

For each quarter of ``year`` the whole training recipe (:func:`trainer.train.fit`) runs on the
origins before it: early stopping, bias factors, EWMA lambda and interval calibration on the
three months before the quarter, the model and HAR fits on everything earlier, then the refit on
both. The quarter's hourly origins are the test. The features and targets are computed once for
the whole file (they are point in time), and the usual embargo separates the splits.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from trainer.baselines import LAMBDA_GRID
from trainer.dataset import Dataset, point_in_time_rows
from trainer.report import MODEL, improvement
from trainer.settings import TrainerSettings
from trainer.targets import HOUR, assign_splits, clean_candles, origin_times
from trainer.train import fit

log = logging.getLogger(__name__)
VALID_MONTHS = 3
COLUMNS = ("model", "persistence", "ewma", "har", "har_seasonal")


def quarters(year: int) -> list[tuple[str, pd.Timestamp, pd.Timestamp]]:
    """``(label, start, end)`` of each quarter of ``year`` (UTC).

    >>> [q[0] for q in quarters(2024)], str(quarters(2024)[3][2].date())
    (['2024Q1', '2024Q2', '2024Q3', '2024Q4'], '2025-01-01')
    """
    starts = pd.date_range(f"{year}-01-01", periods=5, freq="QS", tz="UTC")
    return [(f"{year}Q{i + 1}", starts[i], starts[i + 1]) for i in range(4)]


def quarter_dataset(all_rows: Dataset, start: pd.Timestamp, end: pd.Timestamp) -> Dataset:
    """Train (dense), validation (the ``VALID_MONTHS`` before ``start``) and the quarter's
    hourly origins as test, with the embargo between them."""
    valid_start = int((start - pd.DateOffset(months=VALID_MONTHS)).timestamp())
    test_start, test_end = int(start.timestamp()), int(end.timestamp())
    rows = all_rows.frame
    t = rows["time"].to_numpy()
    rows = rows[t < test_end]
    t = rows["time"].to_numpy()
    labels = assign_splits(t, (valid_start, test_start))
    keep = (labels != "") & ((labels != "test") | (t % HOUR == 0))
    frame = rows.assign(split=labels)[keep].reset_index(drop=True)
    bounds = (valid_start, test_start)
    return Dataset(frame, all_rows.feature_names, all_rows.feature_version, bounds, "walk-forward")


def walk_forward(
    candles: pd.DataFrame,
    year: int,
    ts: TrainerSettings,
    threads: int,
    which: tuple[int, ...] = (1, 2, 3, 4),
) -> list[dict[str, Any]]:
    """One test report per quarter of ``year`` in ``which`` (``quarter``, ``n_train`` and the
    usual keys)."""
    candles = clean_candles(candles)
    origins = origin_times(candles["time"].to_numpy(), ts.train_step_minutes)
    rows, names, version = point_in_time_rows(candles, origins, LAMBDA_GRID, ts)
    all_rows = Dataset(rows.assign(split=""), names, version)
    out = []
    for number, (label, start, end) in enumerate(quarters(year), start=1):
        if number not in which:
            continue
        ds = quarter_dataset(all_rows, start, end)
        if not (ds.frame["split"] == "test").any():
            log.warning("no test origins", extra={"quarter": label})
            continue
        cpu = time.process_time()
        fitted = fit(ds, ts, threads)
        cpu = time.process_time() - cpu
        report = {"quarter": label, "fit_cpu_s": round(cpu, 1), **fitted.params, **fitted.report}
        log.info("walk-forward quarter", extra={"quarter": label, "qlike": report[MODEL]["qlike"]})
        out.append(report)
    return out


def table(reports: list[dict[str, Any]]) -> str:
    """Per-quarter QLIKE of every model, the gain and DM against ``har_seasonal``, R² of log RV
    and the interval's coverage."""
    head = f"{'quarter':<8}{'n':>6}" + "".join(f"{c:>13}" for c in COLUMNS)
    head += f"{'vs hs':>8}{'DM hs':>8}{'R2':>7}{'cover':>7}"
    lines = [head]
    for r in reports:
        line = f"{r['quarter']:<8}{r['n']:>6}" + "".join(f"{r[c]['qlike']:>13.4f}" for c in COLUMNS)
        cover = r.get("interval", {}).get("coverage", np.nan)
        line += f"{improvement(r, 'har_seasonal'):>+8.1%}{r['dm']['har_seasonal']['stat']:>8.2f}"
        line += f"{r[MODEL]['r2']:>7.3f}{cover:>7.1%}"
        lines.append(line)
    return "\n".join(lines)
