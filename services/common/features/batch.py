"""The batch path: features for every candle of a frame, or for chosen times only.

>>> import pandas as pd
>>> t = 1_700_000_040 + 60 * np.arange(3)
>>> candles = pd.DataFrame({"time": t, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
...                         "volumefrom": 1.0, "volumeto": 1.0})
>>> out = featurize_many(candles)
>>> out["time"].tolist(), out["warm"].tolist()
([1700000040, 1700000100, 1700000160], [False, False, False])
>>> out["ret_1m"].tolist(), out["rv_5m"].tolist()
([nan, 0.0, 0.0], [nan, nan, nan])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from services.common.features.frame import COLUMNS, Frame, frame_start, is_warm
from services.common.features.kernel import PRIOR_HOURS, Derived, Rows, compute, derive
from services.common.features.spec import FEATURE_NAMES, MINUTE

CHUNK_ROWS = 16_384
"""Rows per kernel call: bounds memory, keeps the working set in cache."""
GATHER_ROWS = 1024
"""Rows per call for scattered ``at`` times: each gathers copies of its windows."""
REQUIRED = ("time", "open", "high", "low", "close", "volumefrom", "volumeto")


def prepare(candles: pd.DataFrame) -> pd.DataFrame:
    """Sorted by time, one row per time (the last wins), minute-aligned; else ``ValueError``."""
    missing = [c for c in REQUIRED if c not in candles.columns]
    if missing:
        raise ValueError(f"candles lack columns {missing}")
    df = candles.sort_values("time", kind="stable").drop_duplicates("time", keep="last")
    times = df["time"].to_numpy(dtype=np.int64)
    if len(times) and (times % MINUTE).any():
        raise ValueError("candle times must be minute-aligned unix seconds")
    return df.reset_index(drop=True)


def _chunks(frame: Frame, present: np.ndarray, at: Sequence[int] | None) -> list[Rows]:
    """The rows to compute: present slots (contiguous chunks) or the present slots of ``at``."""
    if at is None:
        slots = np.flatnonzero(present)
        if not len(slots):
            return []
        first, last = int(slots[0]), int(slots[-1]) + 1
        return [Rows(slice(a, min(a + CHUNK_ROWS, last))) for a in range(first, last, CHUNK_ROWS)]
    wanted = np.unique(np.asarray(at, dtype=np.int64))
    wanted = wanted[(wanted >= frame.t0) & (wanted < frame.t0 + frame.n * MINUTE)]
    slots = frame.slot(wanted[wanted % MINUTE == 0])
    slots = slots[present[slots]]
    step = GATHER_ROWS
    return [Rows(slots[a : a + step]) for a in range(0, len(slots), step)]


def _block(d: Derived, rows: Rows, origin: int) -> pd.DataFrame:
    keep = ~np.isnan(d.close[rows.idx])
    values = compute(d, rows)
    times = d.frame.times(rows.idx)[keep]
    cols = {"time": times, "warm": is_warm(times, origin)}
    cols.update({name: values[name][keep] for name in FEATURE_NAMES})
    return pd.DataFrame(cols)


def featurize_many(candles: pd.DataFrame, at: Sequence[int] | None = None) -> pd.DataFrame:
    """Features of one symbol's candles: one row per candle time, or per time of ``at``.

    Columns: ``time``, ``warm``, then :data:`FEATURE_NAMES` (float64, NaN where undefined).
    A time in ``at`` without a candle gets no row. Features at ``t`` read candles ``<= t`` only.
    """
    df = prepare(candles)
    empty = pd.DataFrame({"time": [], "warm": [], **{n: [] for n in FEATURE_NAMES}})
    if df.empty:
        return empty.astype({"time": "int64", "warm": bool})
    times = df["time"].to_numpy(dtype=np.int64)
    origin = int(times[0])
    columns = {name: df[name].to_numpy() for name in COLUMNS}
    frame = Frame.from_points(frame_start(origin), int(times[-1]), times, columns)
    d = derive(frame, np.zeros(PRIOR_HOURS), np.zeros(PRIOR_HOURS, dtype=np.int64))
    blocks = [_block(d, rows, origin) for rows in _chunks(frame, ~np.isnan(d.close), at)]
    if not blocks:
        return empty.astype({"time": "int64", "warm": bool})
    return pd.concat(blocks, ignore_index=True)
