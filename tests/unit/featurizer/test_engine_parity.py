"""The featurizer engine on real candles, against the batch path (no broker).

Micro-batches of uneven sizes, a late and a replayed candle, and a rebuild from the log at
several cut points must all give exactly what ``featurize_many`` gives on the same slice.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from services.common.features import FEATURE_NAMES, featurize_many
from services.common.schemas import Candle
from services.common.settings import REPO_ROOT
from services.featurizer.app import new_engine
from services.featurizer.core import Record
from services.featurizer.parity import compare

DATA = REPO_ROOT.parent / "shared" / "data" / "btcusdt_1m_2023-2024.parquet"
START = int(pd.Timestamp("2024-12-01", tz="UTC").timestamp())
DAYS = 8


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    if not Path(DATA).exists():
        pytest.skip("real data missing")
    frame = pd.read_parquet(
        DATA, filters=[("time", ">=", START), ("time", "<", START + DAYS * 86400)]
    )
    return frame.reset_index(drop=True)


def log_of(candles: pd.DataFrame) -> list[Record]:
    recs = []
    for i, row in enumerate(candles.itertuples(index=False)):
        c = Candle(symbol="BTC", **{k: getattr(row, k) for k in candles.columns})
        recs.append(Record(0, i, b"BTC", c.to_bytes()))
    return recs


def test_stream_equals_batch_through_uneven_batches(candles: pd.DataFrame) -> None:
    log = log_of(candles)
    engine, vectors, i = new_engine(), [], 0
    for size in [1, 7, 500, 3, 2000, 60] * 100:
        if i >= len(log):
            break
        vectors += engine.process(log[i : i + size]).features
        i += size
    report = compare(vectors, featurize_many(candles), FEATURE_NAMES)
    assert report.ok, report.mismatches[:5]
    assert report.rows == len(candles) and report.warm_rows > 1000


def test_rebuild_from_log_then_continue_equals_batch(candles: pd.DataFrame) -> None:
    log = log_of(candles)
    # a late (different) and a replayed (identical) candle in the middle of the log
    late = Candle.from_bytes(log[5000].value).model_copy(update={"close": 1.0})
    log.insert(9000, Record(0, 0, b"BTC", late.to_bytes()))
    log.insert(9500, Record(0, 0, b"BTC", log[9400].value))
    log = [Record(0, i, r.key, r.value) for i, r in enumerate(log)]
    expected = featurize_many(candles)
    for cut in (10, 9001, 10_500):
        engine = new_engine()
        engine.rebuild(0, log[:cut], upto=cut)
        assert engine.stale(log[cut:]) == {}
        out = [engine.process(log[j : j + 1000]) for j in range(cut, len(log), 1000)]
        vectors = [v for o in out for v in o.features]
        assert sum(len(o.dead) for o in out) == int(cut <= 9000)
        report = compare(vectors, expected[expected["time"] >= vectors[0].time], FEATURE_NAMES)
        assert report.ok, (cut, report.mismatches[:5], report.missing[:5])


def test_published_vectors_are_binary_and_decode_to_the_same_vectors(
    candles: pd.DataFrame,
) -> None:
    """What the featurizer publishes (``encode_vector``) for real candles, in micro-batches and
    one at a time (the array and the one-row paths), is the binary format, and reads back as
    the very vector it encoded, the same as its JSON does (``None`` where undefined)."""
    from services.common.schemas import FeatureVector
    from services.common.vector_codec import MAGIC
    from services.featurizer.core import encode_vector

    log = log_of(candles.iloc[: 2 * 1440])
    engine = new_engine()
    vectors = engine.process(log[:-5]).features
    vectors += [v for r in log[-5:] for v in engine.process([r]).features]
    assert len(vectors) == len(log) and any(None in v.features.values() for v in vectors)
    for v in vectors:
        data = encode_vector(v)
        assert data[0] == MAGIC
        assert FeatureVector.from_bytes(data) == v == FeatureVector.from_bytes(v.to_bytes())
