"""Snapshot a window of the candle lake into one Parquet file, the input of every retraining run.

This is the I/O shell of the retraining DAG's first two steps (:func:`run_snapshot`,
:func:`run_gate`); the checks themselves are pure, in :mod:`trainer.quality`.

The lake is hive-partitioned, ``DATA_DIR/lake/candles/symbol=SYM/date=YYYY-MM-DD/*.parquet``, and
read and written through :mod:`services.common.lake` (the archiver's module). A snapshot
freezes ``[start, end)`` for one symbol into a file in the shared candle layout (``time`` int64
unix seconds, then ``open high low close volumefrom volumeto``, sorted by time), so the quality
gate, DVC and the trainer all see the same bytes.

Exact duplicate rows (an at-least-once writer replaying a batch) are dropped and counted;
*conflicting* duplicates (same time, other values) are kept for the quality gate to refuse.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from services.common.errors import VolstreamError
from services.common.schemas import CANDLE_FIELDS, Candle
from services.common.settings import Settings, get_settings
from trainer.quality import QualityThresholds, check_candles, profile_html

log = logging.getLogger(__name__)


class SnapshotError(VolstreamError):
    """The window cannot be snapshotted (no lake, or nothing in it for the window)."""


@dataclass(frozen=True)
class SnapshotResult:
    """Where the snapshot went and what it holds."""

    path: str
    symbol: str
    start: int
    end: int
    rows: int
    dropped_replays: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data for XCom."""
        return asdict(self)


def parse_time(value: str | int | float | dt.datetime) -> int:
    """Unix seconds from an ISO date/time (UTC unless it says otherwise) or a number.

    >>> parse_time("2024-03-01"), parse_time("2024-03-01T00:01:00+00:00"), parse_time(60)
    (1709251200, 1709251260, 60)
    """
    if isinstance(value, int | float):
        return int(value)
    stamp = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return int(stamp.timestamp())


def drop_replays(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop rows identical in every candle field; keep conflicting ones. Sorted by time.

    >>> df = pd.DataFrame({c: [1, 1, 1] for c in CANDLE_FIELDS}).assign(close=[1, 1, 2])
    >>> out, dropped = drop_replays(df)
    >>> len(out), dropped
    (2, 1)
    """
    out = df.drop_duplicates(subset=list(CANDLE_FIELDS))
    out = out.sort_values("time", kind="stable").reset_index(drop=True)
    return out, len(df) - len(out)


def read_window(data_dir: Path, symbol: str, start: int, end: int) -> pd.DataFrame:
    """The lake's candles of one symbol in ``[start, end)``, sorted by time (unchecked)."""
    from services.common.lake import lake_root, read_lake

    if not lake_root(data_dir).is_dir():
        raise SnapshotError(f"no candle lake at {lake_root(data_dir)}")
    return read_lake(data_dir, symbol, start, end)[list(CANDLE_FIELDS)]


def write_candles(df: pd.DataFrame, path: Path) -> Path:
    """Write candles in the shared layout, atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    table = pa.Table.from_pandas(df[list(CANDLE_FIELDS)], preserve_index=False)
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def snapshot(data_dir: Path, symbol: str, start: int, end: int, out: Path) -> SnapshotResult:
    """Freeze the lake window ``[start, end)`` of ``symbol`` into the Parquet file ``out``."""
    if end <= start:
        raise SnapshotError(f"empty window: start {start} >= end {end}")
    df, dropped = drop_replays(read_window(data_dir, symbol, start, end))
    if df.empty:
        raise SnapshotError(f"no {symbol} candles in the lake between {start} and {end}")
    write_candles(df, out)
    return SnapshotResult(str(out), symbol, start, end, len(df), dropped)


def seed_lake(candles: pd.DataFrame, data_dir: Path, symbol: str) -> int:
    """Merge recorded candles into the lake (as the archiver would): demos, tests, backfills.

    Returns how many rows were new.
    """
    from services.common.lake import write_candles as write_lake

    rows = zip(*(candles[c].tolist() for c in CANDLE_FIELDS), strict=True)
    fields = (dict(zip(CANDLE_FIELDS, row, strict=True)) for row in rows)
    return write_lake(data_dir, (Candle(symbol=symbol, **f) for f in fields))


def snapshot_path(data_dir: Path, symbol: str, start: int, end: int) -> Path:
    """Where the snapshot of a window lives: one file per window, so re-runs overwrite it.

    >>> snapshot_path(Path("/d"), "BTC", 0, 60).as_posix()
    '/d/snapshots/BTC/BTC_0_60.parquet'
    """
    return data_dir / "snapshots" / symbol / f"{symbol}_{start}_{end}.parquet"


def run_snapshot(
    symbol: str, start: int, end: int, settings: Settings | None = None
) -> dict[str, Any]:
    """The DAG's ``snapshot`` step: freeze the window from ``DATA_DIR``'s lake; plain data out."""
    data_dir = (settings or get_settings()).data_dir
    result = snapshot(data_dir, symbol, start, end, snapshot_path(data_dir, symbol, start, end))
    log.info("snapshot written", extra={"symbol": symbol, **result.to_dict()})
    return result.to_dict()


def run_gate(
    snap: dict[str, Any],
    thresholds: QualityThresholds | None = None,
    settings: Settings | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The DAG's ``quality_gate`` step: check a snapshot, log it to MLflow, raise on failure.

    The report and an HTML data profile are logged (pass or fail) as artifacts of a
    ``data-quality`` run in the symbol's experiment, so a refused window can be inspected.
    """
    df = pd.read_parquet(snap["path"])
    report = check_candles(df, thresholds, window_end=int(snap["end"]))
    title = f"{snap['symbol']} candles {snap['start']}..{snap['end']}"
    _log_quality_run(
        settings or get_settings(),
        snap,
        report.to_dict(),
        profile_html(df, report, title=title),
        tags or {},
    )
    log.info("quality gate", extra={"symbol": snap["symbol"], "passed": report.passed})
    report.raise_for_failures()
    return report.to_dict()


def _log_quality_run(
    settings: Settings,
    snap: dict[str, Any],
    report: dict[str, Any],
    html: str,
    tags: dict[str, str],
) -> None:
    import mlflow

    from services.common.registry import experiment_name

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(experiment_name(snap["symbol"]))
    run_tags = {"volstream.step": "data-quality", "passed": str(report["passed"]), **tags}
    with mlflow.start_run(run_name="data-quality", tags=run_tags):
        mlflow.log_params({k: snap[k] for k in ("symbol", "start", "end", "rows", "path")})
        mlflow.log_metrics({f"data_{k}": v for k, v in report["stats"].items()})
        mlflow.log_dict(report, "quality/report.json")
        mlflow.log_text(html, "quality/data_profile.html")
