"""The data quality gate: pure checks on a candle DataFrame, before anything is trained on it.

Retraining on bad data silently ships a bad model, so the gate is mandatory and loud: every check
produces a :class:`Check`, :func:`check_candles` collects them in a :class:`QualityReport`, and
:meth:`QualityReport.raise_for_failures` raises :class:`DataQualityError` naming each failure.
Gaps are reported (where, how long) and fail the gate only when coverage drops too low::

    >>> import pandas as pd
    >>> df = pd.DataFrame({"time": [0, 60, 180], "open": [1.0, 1.1, 1.2], "high": [1.2, 1.2, 1.3],
    ...                    "low": [0.9, 1.0, 1.1], "close": [1.1, 1.2, 1.25],
    ...                    "volumefrom": [1.0, 2.0, 3.0], "volumeto": [1.1, 2.3, 3.6]})
    >>> report = check_candles(df, QualityThresholds(min_rows=3, min_coverage=0.5), window_end=240)
    >>> report.passed, report.gaps
    (True, [Gap(start=60, end=180, missing=1)])
    >>> bad = df.assign(high=[0.5, 1.2, 1.3])
    >>> check_candles(bad, QualityThresholds(min_rows=3), window_end=240).raise_for_failures()
    Traceback (most recent call last):
    ...
    trainer.quality.DataQualityError: quality gate failed: ohlc_consistency: 1 rows (33.33%) ...
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from services.common.errors import VolstreamError
from services.common.schemas import CANDLE_FIELDS

PRICE_FIELDS = ("open", "high", "low", "close")
VOLUME_FIELDS = ("volumefrom", "volumeto")


class DataQualityError(VolstreamError):
    """The candle data failed the quality gate; ``report`` holds every check."""

    def __init__(self, report: QualityReport) -> None:
        self.report = report
        failed = "; ".join(f"{c.name}: {c.detail}" for c in report.failures)
        super().__init__(f"quality gate failed: {failed}")


@dataclass(frozen=True)
class QualityThresholds:
    """What the gate tolerates. Defaults suit 1-minute candles."""

    max_null_fraction: float = 0.01
    """Per column: the share of nulls must stay strictly below this."""
    min_coverage: float = 0.95
    """Present minutes over expected minutes between the first and last candle."""
    max_staleness_s: int = 3600
    """The newest candle must start at most this long before the window end."""
    min_rows: int = 60
    """Fewer rows than this cannot train anything."""
    interval_s: int = 60
    """The candle interval."""


@dataclass(frozen=True)
class Check:
    """One named check: passed or not, with a readable detail."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Gap:
    """Missing candles: ``missing`` intervals between the candles at ``start`` and ``end``."""

    start: int
    end: int
    missing: int


@dataclass
class QualityReport:
    """Every check's outcome, the gaps, and a few figures for the profile and MLflow."""

    rows: int
    checks: list[Check] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def failures(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.passed]

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return not self.failures

    def raise_for_failures(self) -> QualityReport:
        """Raise :class:`DataQualityError` if any check failed; else return self."""
        if not self.passed:
            raise DataQualityError(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (for XCom, logs and MLflow)."""
        return {"passed": self.passed, **asdict(self)}


def _share(count: int, total: int) -> str:
    return f"{count} rows ({100.0 * count / max(total, 1):.2f}%)"


def check_schema(df: pd.DataFrame) -> Check:
    """Every candle column is present and numeric, and ``time`` is an integer."""
    missing = [c for c in CANDLE_FIELDS if c not in df.columns]
    if missing:
        return Check("schema", False, f"missing columns {missing}")
    wrong = [c for c in CANDLE_FIELDS if not pd.api.types.is_numeric_dtype(df[c])]
    if not pd.api.types.is_integer_dtype(df["time"]):
        wrong.append("time (not integer)")
    if wrong:
        return Check("schema", False, f"non-numeric columns {wrong}")
    return Check("schema", True, f"{len(CANDLE_FIELDS)} columns ok")


def check_rows(df: pd.DataFrame, th: QualityThresholds) -> Check:
    """Enough rows to learn from."""
    return Check("row_count", len(df) >= th.min_rows, f"{len(df)} rows (min {th.min_rows})")


def check_nulls(df: pd.DataFrame, th: QualityThresholds) -> Check:
    """Each column's null share is below ``max_null_fraction`` (inf counts as null)."""
    values = df[list(CANDLE_FIELDS)].replace([np.inf, -np.inf], np.nan)
    fractions = values.isna().mean() if len(df) else values.isna().sum()
    worst = str(fractions.idxmax())
    ok = bool((fractions < th.max_null_fraction).all())
    return Check("nulls", ok, f"worst column {worst}: {100.0 * fractions[worst]:.2f}% null")


def check_ranges(df: pd.DataFrame) -> Check:
    """Prices are strictly positive, volumes non-negative (nulls are judged by ``nulls``)."""
    bad_price = (df[list(PRICE_FIELDS)] <= 0).any(axis=1)
    bad_volume = (df[list(VOLUME_FIELDS)] < 0).any(axis=1)
    bad = int((bad_price | bad_volume).sum())
    return Check("ranges", bad == 0, _share(bad, len(df)) + " out of range")


def check_ohlc(df: pd.DataFrame) -> Check:
    """``low <= min(open, close)`` and ``high >= max(open, close)`` on every complete row."""
    oc_max = df[["open", "close"]].max(axis=1)
    oc_min = df[["open", "close"]].min(axis=1)
    bad = int(((df["high"] < oc_max) | (df["low"] > oc_min) | (df["low"] > df["high"])).sum())
    return Check("ohlc_consistency", bad == 0, _share(bad, len(df)) + " with inconsistent OHLC")


def check_duplicates(df: pd.DataFrame) -> Check:
    """No candle time appears twice (a replayed write, or two conflicting sources)."""
    dup = int(df["time"].duplicated().sum())
    return Check("duplicates", dup == 0, _share(dup, len(df)) + " with a repeated time")


def check_freshness(df: pd.DataFrame, th: QualityThresholds, window_end: int | None) -> Check:
    """The newest candle starts no more than ``max_staleness_s`` before the window end."""
    if window_end is None or df.empty:
        return Check("freshness", not df.empty, "no window end given" if len(df) else "no rows")
    lag = int(window_end - int(df["time"].max()))
    return Check("freshness", lag <= th.max_staleness_s, f"newest candle {lag} s before end")


def find_gaps(times: pd.Series, interval_s: int = 60) -> list[Gap]:
    """Runs of missing candles between consecutive (sorted, unique) candle times.

    >>> find_gaps(pd.Series([0, 60, 300, 360]))
    [Gap(start=60, end=300, missing=3)]
    """
    t = np.unique(times.dropna().to_numpy(dtype="int64"))
    steps = np.diff(t)
    idx = np.flatnonzero(steps > interval_s)
    return [Gap(int(t[i]), int(t[i + 1]), int(steps[i] // interval_s) - 1) for i in idx.tolist()]


def check_coverage(df: pd.DataFrame, gaps: list[Gap], th: QualityThresholds) -> Check:
    """Present minutes over expected minutes, from the first to the last candle."""
    if df.empty:
        return Check("coverage", False, "no rows")
    span = (int(df["time"].max()) - int(df["time"].min())) // th.interval_s + 1
    missing = sum(g.missing for g in gaps)
    coverage = 1.0 - missing / span
    detail = f"{100.0 * coverage:.2f}% of {span} minutes; {len(gaps)} gaps, {missing} missing"
    return Check("coverage", coverage >= th.min_coverage, detail)


def check_candles(
    df: pd.DataFrame, thresholds: QualityThresholds | None = None, window_end: int | None = None
) -> QualityReport:
    """Run every check on a candle frame (``time`` in unix seconds) and report; never raises."""
    th = thresholds or QualityThresholds()
    schema = check_schema(df)
    report = QualityReport(rows=len(df), checks=[schema, check_rows(df, th)])
    if not schema.passed:
        return report
    report.gaps = find_gaps(df["time"], th.interval_s)
    report.checks += [
        check_nulls(df, th),
        check_ranges(df),
        check_ohlc(df),
        check_duplicates(df),
        check_freshness(df, th, window_end),
        check_coverage(df, report.gaps, th),
    ]
    report.stats = summary_stats(df)
    return report


def summary_stats(df: pd.DataFrame) -> dict[str, float]:
    """A few figures worth logging as metrics (first/last time, mean close, total volume)."""
    if df.empty:
        return {"rows": 0.0}
    return {
        "rows": float(len(df)),
        "time_min": float(df["time"].min()),
        "time_max": float(df["time"].max()),
        "close_mean": float(df["close"].mean()),
        "volumefrom_sum": float(df["volumefrom"].sum()),
        "null_cells": float(df[list(CANDLE_FIELDS)].isna().sum().sum()),
    }


def profile_html(
    df: pd.DataFrame, report: QualityReport, title: str = "Candle data profile"
) -> str:
    """A self-contained HTML data profile: the checks, the gaps and per-column statistics.

    Built with pandas alone (ydata-profiling pulls a heavy, pandas-pinned dependency tree).

    >>> df = pd.DataFrame({c: [1.0, 2.0] for c in CANDLE_FIELDS}).astype({"time": "int64"})
    >>> "<h2>Checks</h2>" in profile_html(df, check_candles(df))
    True
    """
    checks = pd.DataFrame([asdict(c) for c in report.checks])
    gaps = pd.DataFrame([asdict(g) for g in report.gaps], columns=["start", "end", "missing"])
    for col in ("start", "end"):
        gaps[col + "_utc"] = pd.to_datetime(gaps[col], unit="s", utc=True)
    numeric = df.select_dtypes("number")
    described = numeric.describe().T.assign(nulls=numeric.isna().sum(), zeros=(numeric == 0).sum())
    verdict = "PASSED" if report.passed else "FAILED"
    return "\n".join(
        [
            f"<html><head><meta charset='utf-8'><title>{title}</title></head><body>",
            f"<h1>{title}</h1><p>{report.rows} rows; quality gate <b>{verdict}</b></p>",
            "<h2>Checks</h2>",
            checks.to_html(index=False),
            f"<h2>Gaps ({len(gaps)})</h2>",
            gaps.head(200).to_html(index=False),
            "<h2>Columns</h2>",
            described.to_html(float_format=lambda v: f"{v:.6g}"),
            "</body></html>",
        ]
    )
