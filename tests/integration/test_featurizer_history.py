"""A rebuild reads only the history it needs (services.featurizer.history), and stays exact.

Real BTC candles under several synthetic symbols on one partition of the embedded broker. Each
test rebuilds a Featurizer from :func:`read_partition` and from the whole log below the same
offset (what a rebuild read before), then feeds both the same next day: every vector and every
dead letter must be equal. The layouts cover the search's easy case and the cases its checks
exist for: a symbol behind the others, a symbol younger than the history, and candles laid out
by symbol rather than by time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from services.common import features, kafka
from services.common.schemas import Candle
from services.common.settings import Settings
from services.common.topics import TICKS_CLEAN
from services.featurizer.core import Featurizer, Record
from services.featurizer.history import MARGIN_S, TOLERANCE, read_partition
from services.featurizer.replay import load_candles, to_candles

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAY = 1440
DAYS = 11  # 10 days of log, then the day fed after the rebuild
SYMBOLS = ("A", "B", "C")
Series = dict[str, list[Candle | None]]  # None: no candle of that symbol in that minute
Layout = Callable[[Series], tuple[list[Candle], list[Candle]]]


@pytest.fixture(scope="module")
def frame(shared_data: Path) -> pd.DataFrame:
    frame = load_candles(shared_data / "btcusdt_1m_2023-2024.parquet", "2024-11-20", DAYS)
    assert len(frame) == DAYS * DAY
    return frame


def by_time(series: Series, lo: int = 0, hi: int = DAYS * DAY) -> list[Candle]:
    """Minute by minute, every symbol's candle of that minute (how live polling interleaves)."""
    return [c for i in range(lo, hi) for s in series if (c := series[s][i]) is not None]


def interleaved(series: Series) -> tuple[list[Candle], list[Candle]]:
    return by_time(series, 0, 10 * DAY), by_time(series, 10 * DAY)


def one_behind(series: Series) -> tuple[list[Candle], list[Candle]]:
    """C falls silent at day 8 and comes back after the rebuild: its history ends 2 days
    before the newest candle, so the first search does not reach back far enough for it."""
    c, gap = series["C"], [None] * (2 * DAY)
    return interleaved({**series, "C": [*c[: 8 * DAY], *gap, *c[10 * DAY :]]})


def one_young(series: Series) -> tuple[list[Candle], list[Candle]]:
    """C starts at day 6.5: less history than the window, so no search can prove it whole."""
    c, late = series["C"], int(6.5 * DAY)
    return interleaved({**series, "C": [*([None] * late), *c[late:]]})


def by_symbol(series: Series) -> tuple[list[Candle], list[Candle]]:
    """A's 10 days, then B's (as a backfill per symbol lays them out); C joins afterwards. The
    search lands in B's block and would leave A out entirely: only the sample sees it."""
    before = [c for s in ("A", "B") for c in series[s][: 10 * DAY] if c is not None]
    return before, by_time(series, 10 * DAY)


def engine() -> Featurizer:
    return Featurizer(features.OnlineFeatures, features.FEATURE_VERSION, features.HISTORY_MINUTES)


Vector = tuple[str, int, bool, dict[str, float | None]]


def outputs(f: Featurizer, after: list[Record]) -> tuple[list[Vector], list[object]]:
    out = f.process(after)
    vectors: list[Vector] = [(v.symbol, v.time, v.warm, v.features) for v in out.features]
    return vectors, [(d.codes, d.symbol, d.event_time) for d in out.dead]


@pytest.mark.parametrize("layout", [interleaved, one_behind, one_young, by_symbol])
async def test_rebuild_from_the_history_read_equals_a_rebuild_from_the_log_start(
    settings: Settings, frame: pd.DataFrame, layout: Layout
) -> None:
    series: Series = {s: list(to_candles(frame, s)) for s in SYMBOLS}
    before, after = layout(series)
    log = [Record(0, i, c.symbol.encode(), c.to_bytes()) for i, c in enumerate(before + after)]
    await kafka.ensure_topics(settings)
    await kafka.publish(TICKS_CLEAN, [(r.key, r.value) for r in log], settings, partition=0)
    upto = len(before)

    read = await read_partition(settings, 0, upto)
    assert read and read == log[read[0].offset : upto], "not a contiguous tail of the log"
    partial, full = engine(), engine()
    partial.rebuild(0, read, upto)
    full.rebuild(0, log[:upto], upto)
    got, want = outputs(partial, log[upto:]), outputs(full, log[upto:])
    assert len(want[0]) == len(after) and any(w for _, _, w, _ in want[0])
    assert got == want

    needed = len(SYMBOLS) * (features.HISTORY_MINUTES + MARGIN_S // 60 + 1) + TOLERANCE
    if layout is interleaved:  # the search's own case: about the window, not the log
        assert len(read) <= needed < upto
    if layout is one_behind:  # reached back for C, still short of the whole log
        assert needed < len(read) < upto
    if layout in (one_young, by_symbol):  # nothing proves the search right: all is read
        assert len(read) == upto
