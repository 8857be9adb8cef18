"""Replay sources: real history from Parquet (shared layout) or a CryptoCompare JSON response.

Parquet is read with pyarrow in slices (never the whole 2-year file as Python objects at once);
rows come out as plain dicts in CryptoCompare's field names, oldest first as stored. Pacing is pure:
:func:`paced` says when (seconds after the start) each group of rows is due.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from services.common.errors import ConfigError
from services.common.schemas import CANDLE_FIELDS
from services.ingestor.core import MINUTE, Row, parse_body, row_time


def iter_slices(path: Path, slice_rows: int) -> Iterator[list[Row]]:
    """The file's rows in slices of at most ``slice_rows`` (Parquet or CryptoCompare JSON)."""
    if not path.exists():
        raise ConfigError(f"replay file not found: {path}")
    if path.suffix == ".parquet":
        yield from _parquet_slices(path, slice_rows)
        return
    rows = read_json_rows(path)
    for i in range(0, len(rows), slice_rows):
        yield rows[i : i + slice_rows]


def _parquet_slices(path: Path, slice_rows: int) -> Iterator[list[Row]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    columns = [c for c in CANDLE_FIELDS if c in pf.schema_arrow.names]
    if "time" not in columns:
        raise ConfigError(f"{path}: no 'time' column (have {pf.schema_arrow.names})")
    for batch in pf.iter_batches(batch_size=slice_rows, columns=columns):
        yield batch.to_pylist()


def read_json_rows(path: Path) -> list[Row]:
    """Rows of a CryptoCompare v1/v2 response, or of a bare ``Data`` array."""
    raw = path.read_bytes()
    doc = orjson.loads(raw)
    if isinstance(doc, list):
        return doc
    return parse_body(raw).rows


def after_checkpoint(rows: list[Row], after: int | None) -> list[Row]:
    """Drop rows up to ``after`` (a resumed replay); rows without a usable time are kept.

    >>> after_checkpoint([{"time": 0}, {"time": 60}, {}], after=0)
    [{'time': 60}, {}]
    """
    if after is None:
        return rows
    return [r for r in rows if (t := row_time(r)) is None or t > after]


def paced(
    slices: Iterable[list[Row]], speed: float, tick_s: float, max_rows: int
) -> Iterator[tuple[float, list[Row]]]:
    """Groups of rows with the replay-clock offset (real seconds) at which they are due.

    A candle is due when it has closed on a clock that started at the first candle's open and
    runs ``speed`` times real time; a group spans at most ``tick_s`` real seconds, ``max_rows``.

    >>> rows = [{"time": 60 * i} for i in range(4)]
    >>> [(due, [r["time"] for r in g]) for due, g in paced([rows], 60.0, 2.0, 10)]
    [(2.0, [0, 60]), (4.0, [120, 180])]
    """
    start: int | None = None
    group: list[Row] = []
    group_end = 0.0
    for rows in slices:
        for row in rows:
            t = row_time(row)
            if t is not None and start is None:
                start = t
            if t is not None and start is not None:
                due = (t + MINUTE - start) / speed
                if group and (due > group_end or len(group) >= max_rows):
                    yield group_end, group
                    group = []
                if not group:
                    group_end = max(due, (int(due / tick_s - 1e-9) + 1) * tick_s)
            group.append(row)
    if group:
        yield group_end, group
