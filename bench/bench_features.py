"""Feature module throughput: the batch path on the 2-year file, the online path per micro-batch.

Prints rows/s of ``featurize_many`` (every minute of 2023-2024, and hourly origins only, as the
trainer calls it), candles/s of ``OnlineFeatures.update_many`` in batches of 1,000 over a month of
real candles (state restored from the week before, so every row is warm), and the latency and
CPU time of a single-candle update (the live case: the grid is kept between calls, so one
candle costs its own row, not a rebuild of the day before it).
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


def _timed(fn: Any) -> tuple[Any, float, float]:
    """Result, wall seconds and CPU seconds (CPU is the steadier figure on a shared machine)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - start, time.process_time() - cpu


def _online(candles: pd.DataFrame) -> list[dict[str, Any]]:
    records = candles.to_dict("records")
    state = OnlineFeatures("BTC")
    state.restore(records[:HISTORY_MINUTES])
    stream = records[HISTORY_MINUTES : HISTORY_MINUTES + MONTH]
    batches = [stream[i : i + 1000] for i in range(0, len(stream), 1000)]
    rows, wall, cpu = _timed(lambda: [r for b in batches for r in state.update_many(b)])
    assert len(rows) == len(stream) and all(r.warm for r in rows)
    single = records[HISTORY_MINUTES + MONTH : HISTORY_MINUTES + MONTH + 200]
    _, one, one_cpu = _timed(lambda: [state.update_many([c]) for c in single])
    name = "online update_many, batches of 1000"
    return [
        figure(name, len(stream) / wall, "candles/s", ">= 6000"),
        figure(f"{name}, per CPU s", len(stream) / cpu, "candles/s"),
        figure("online update_many, one candle per call", 1000 * one / len(single), "ms/candle"),
        figure(
            "online update_many, one candle per call, CPU",
            1e6 * one_cpu / len(single),
            "us/candle",
            id="features_single_candle_cpu_us",
        ),
    ]


def main() -> dict[str, Any]:
    path = get_settings().shared_data_dir / "btcusdt_1m_2023-2024.parquet"
    candles = pd.read_parquet(path)
    full, wall, cpu = _timed(lambda: featurize_many(candles))
    name = "batch featurize_many, 2-year file"
    figures = [
        figure(name, len(full) / wall, "rows/s"),
        figure(f"{name}, per CPU s", len(full) / cpu, "rows/s"),
        figure(f"{name}, wall", wall, "s"),
    ]
    hourly = candles["time"][candles["time"] % 3600 == 0].tolist()
    picked, wall, _ = _timed(lambda: featurize_many(candles, at=hourly))
    figures.append(figure("batch featurize_many, hourly origins (at=)", wall, "s"))
    figures += _online(candles.iloc[-(HISTORY_MINUTES + MONTH + 200) :])
    save("features", figures, feature_version=FEATURE_VERSION, rows=len(full), at_rows=len(picked))
    return {"figures": figures}


if __name__ == "__main__":
    main()
