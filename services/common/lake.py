"""The Parquet lake of validated candles: ``DATA_DIR/lake/candles/symbol=…/date=YYYY-MM-DD/``.

One file per symbol and UTC day (``part-0.parquet``, the Candle columns; ``symbol`` and ``date``
live in the hive path), so the trainer and Airflow read it as a pyarrow dataset with hive
partitioning. Writes are idempotent under replay: a day file is rewritten as the merge of old
and new rows, de-duplicated by ``time`` (the newest copy wins), into a temporary file that
atomically replaces the old one, under a per-day file lock::

    >>> import tempfile
    >>> from services.common.schemas import Candle
    >>> d = Path(tempfile.mkdtemp())
    >>> cs = [Candle(symbol="BTC", time=1733011200 + 60 * i, open=1, high=2, low=0.5, close=1.5,
    ...              volumefrom=1, volumeto=3) for i in range(3)]
    >>> write_candles(d, cs), write_candles(d, cs[1:])     # a replay adds nothing
    (3, 0)
    >>> back = read_lake(d, "BTC")
    >>> list(back["symbol"]), list(back["time"] - 1733011200)
    (['BTC', 'BTC', 'BTC'], [0, 60, 120])
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from services.common.schemas import CANDLE_FIELDS, Candle

FILE_NAME = "part-0.parquet"
SCHEMA = pa.schema([("time", pa.int64())] + [(f, pa.float64()) for f in CANDLE_FIELDS[1:]])
Moment = int | float | str | datetime | pd.Timestamp | None


def lake_root(data_dir: Path) -> Path:
    """Where the candle dataset lives under ``DATA_DIR``."""
    return Path(data_dir) / "lake" / "candles"


def day_dir(data_dir: Path, symbol: str, day: str) -> Path:
    """The hive partition directory of one symbol and one UTC day (``YYYY-MM-DD``)."""
    return lake_root(data_dir) / f"symbol={symbol}" / f"date={day}"


def utc_day(time_s: int) -> str:
    """The UTC date of a unix time, as the partition value."""
    return datetime.fromtimestamp(time_s, UTC).strftime("%Y-%m-%d")


def write_candles(data_dir: Path, candles: Iterable[Candle]) -> int:
    """Merge candles into their day files; returns how many (symbol, time) rows are new."""
    groups: dict[tuple[str, str], list[Candle]] = {}
    for c in candles:
        groups.setdefault((c.symbol, utc_day(c.time)), []).append(c)
    return sum(
        _merge_day(
            day_dir(data_dir, s, d),
            pd.DataFrame(
                [[getattr(c, f) for f in CANDLE_FIELDS] for c in cs], columns=list(CANDLE_FIELDS)
            ),
        )
        for (s, d), cs in groups.items()
    )


def write_frame(data_dir: Path, symbol: str, frame: pd.DataFrame) -> int:
    """Merge one symbol's candles (a frame of the Candle columns) into its day files, as
    ``write_candles`` does; returns how many rows are new. For bulk loads (``data fetch``)."""
    days = pd.to_datetime(frame["time"], unit="s", utc=True).dt.strftime("%Y-%m-%d")
    return sum(
        _merge_day(day_dir(data_dir, symbol, str(d)), part[list(CANDLE_FIELDS)])
        for d, part in frame.groupby(days, sort=True)
    )


def _merge_day(directory: Path, new: pd.DataFrame) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILE_NAME
    with _locked(directory):
        old = pq.read_table(path).to_pandas() if path.exists() else new.iloc[:0]
        merged = pd.concat([old, new], ignore_index=True)
        merged = merged.drop_duplicates("time", keep="last").sort_values("time")
        table = pa.Table.from_pandas(merged.astype({"time": "int64"}), SCHEMA, preserve_index=False)
        tmp = directory / f".{FILE_NAME}.{os.getpid()}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    return len(merged) - len(old)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on a day, so two archivers never interleave read-merge-write."""
    with open(directory / ".lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_lake(
    data_dir: Path, symbol: str, start: Moment = None, end: Moment = None
) -> pd.DataFrame:
    """Candles of ``symbol`` with ``start <= time < end`` (unix s or any date-like), sorted.

    Columns: ``symbol`` then the Candle columns. Empty (same columns) when nothing is stored.
    """
    base = lake_root(data_dir) / f"symbol={symbol}"
    columns = ["symbol", *CANDLE_FIELDS]
    if not base.exists():
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns}).astype(
            {"symbol": "object", "time": "int64"}
        )
    dataset = ds.dataset(base, format="parquet", partitioning="hive", schema=SCHEMA)
    cond = None
    for op, bound in ((">=", start), ("<", end)):
        if bound is not None:
            term = (
                ds.field("time") >= _unix(bound) if op == ">=" else ds.field("time") < _unix(bound)
            )
            cond = term if cond is None else cond & term
    frame = dataset.to_table(filter=cond, columns=list(CANDLE_FIELDS)).to_pandas()
    frame.insert(0, "symbol", symbol)
    ordered: pd.DataFrame = frame.sort_values("time").reset_index(drop=True)
    return ordered


def _unix(moment: Moment) -> int:
    if isinstance(moment, int | float):
        return int(moment)
    if moment is None:
        raise ValueError("no moment")
    ts = pd.Timestamp(moment)
    return int((ts.tz_localize("UTC") if ts.tzinfo is None else ts).timestamp())
