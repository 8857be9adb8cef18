"""Feature module throughput: the batch path on the 2-year file, the online path per micro-batch.

Prints rows/s of ``featurize_many`` (every minute of 2023-2024, and hourly origins only, as the
trainer calls it), candles/s of ``OnlineFeatures.update_many`` in batches of 1,000 over a month of
real candles (state restored from the week before, so every row is warm), and the latency of a
single-candle update (the live case).
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from bench.common import figure, save
from services.common.features import (
    FEATURE_VERSION,
    HISTORY_MINUTES,
    OnlineFeatures,
    featurize_many,
)
from services.common.settings import get_settings

MONTH = 30 * 1440


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _online(candles: pd.DataFrame) -> list[dict[str, Any]]:
    records = candles.to_dict("records")
    state = OnlineFeatures("BTC")
    state.restore(records[:HISTORY_MINUTES])
    stream = records[HISTORY_MINUTES : HISTORY_MINUTES + MONTH]
    start = time.perf_counter()
    rows = [
        row for i in range(0, len(stream), 1000) for row in state.update_many(stream[i : i + 1000])
    ]
    elapsed = time.perf_counter() - start
    assert len(rows) == len(stream) and all(r.warm for r in rows)
    single = records[HISTORY_MINUTES + MONTH : HISTORY_MINUTES + MONTH + 200]
    _, one = _timed(lambda: [state.update_many([c]) for c in single])
    return [
        figure(
            "online update_many, batches of 1000", len(stream) / elapsed, "candles/s", ">= 6000"
        ),
        figure("online update_many, one candle per call", 1000 * one / len(single), "ms/candle"),
    ]


def main() -> dict[str, Any]:
    path = get_settings().shared_data_dir / "btcusdt_1m_2023-2024.parquet"
    candles = pd.read_parquet(path)
    full, seconds = _timed(lambda: featurize_many(candles))
    figures = [figure("batch featurize_many, 2-year file", len(full) / seconds, "rows/s")]
    figures.append(figure("batch featurize_many, 2-year file, wall", seconds, "s"))
    hourly = candles["time"][candles["time"] % 3600 == 0].tolist()
    picked, seconds = _timed(lambda: featurize_many(candles, at=hourly))
    figures.append(figure("batch featurize_many, hourly origins (at=)", seconds, "s"))
    figures += _online(candles.iloc[-(HISTORY_MINUTES + MONTH + 200) :])
    save("features", figures, feature_version=FEATURE_VERSION, rows=len(full), at_rows=len(picked))
    return {"figures": figures}


if __name__ == "__main__":
    main()
