"""The featurizer's pure logic: triage, offsets, rebuild, output messages (no broker)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from services.common.schemas import Candle, DeadLetter, FeatureVector
from services.featurizer.core import Featurizer, Record, encode_vector


@dataclass
class Row:
    time: int
    warm: bool
    features: dict[str, float | None]


class WindowSum:
    """Toy online state: the sum of closes over the last 3 minutes (time-based window)."""

    def __init__(self, symbol: str) -> None:
        self.last_time: int | None = None
        self.closes: dict[int, float] = {}

    def update_many(self, candles: Sequence[Candle]) -> list[Row]:
        rows = []
        for c in candles:
            t = c.time
            assert self.last_time is None or t > self.last_time
            self.last_time = t
            self.closes[t] = c.close
            window = [v for k, v in self.closes.items() if k > t - 180]
            rows.append(Row(t, len(window) == 3, {"sum3": sum(window)}))
        return rows

    def restore(self, candles: Sequence[Candle]) -> None:
        self.update_many(candles)


def candle(symbol: str, minute: int, close: float | None = None, **extra: Any) -> bytes:
    c = Candle(
        symbol=symbol,
        time=60 * minute,
        open=1.0,
        high=3.0,
        low=0.5,
        close=float(minute) if close is None else close,
        volumefrom=1.0,
        volumeto=2.0,
        **extra,
    )
    return c.to_bytes()


def engine() -> Featurizer:
    return Featurizer(online_factory=WindowSum, feature_version="toy-1", history_minutes=3)


def records(partition: int, symbol: str, minutes: list[int], first_offset: int = 0) -> list[Record]:
    return [
        Record(partition, first_offset + i, symbol.encode(), candle(symbol, m))
        for i, m in enumerate(minutes)
    ]


def test_one_vector_per_candle_with_version_and_timestamps() -> None:
    f = engine()
    recs = [Record(0, i, b"BTC", candle("BTC", i, ingested_at=1000.0 + i)) for i in range(1, 5)]
    out = f.process(recs)
    assert [(v.symbol, v.time) for v in out.features] == [("BTC", 60 * i) for i in range(1, 5)]
    assert [v.warm for v in out.features] == [False, False, True, True]
    assert out.features[-1].features == {"sum3": 2.0 + 3.0 + 4.0}
    assert {v.feature_version for v in out.features} == {"toy-1"}
    assert [v.ingested_at for v in out.features] == [1001.0, 1002.0, 1003.0, 1004.0]
    assert all(v.emitted_at >= v.ingested_at for v in out.features)  # type: ignore[operator]
    assert out.commit == {0: 5}
    assert out.dead == []


def test_late_candle_is_dead_lettered_and_leaves_state_intact() -> None:
    clean, dirty = engine(), engine()
    minutes = [1, 2, 3, 4, 5]
    expect = clean.process(records(0, "BTC", minutes)).features
    recs = records(0, "BTC", minutes[:3])
    recs.append(Record(0, 3, b"BTC", candle("BTC", 2, close=99.0)))  # out of order, different
    recs += records(0, "BTC", minutes[3:], first_offset=4)
    out = dirty.process(recs)
    assert [v.model_dump(exclude={"emitted_at"}) for v in out.features] == [
        v.model_dump(exclude={"emitted_at"}) for v in expect
    ]
    assert len(out.dead) == 1 and out.late == {"BTC": 1}
    dead = DeadLetter.from_bytes(out.dead[0].to_bytes())
    assert dead.codes == ["late"] and dead.stage == "featurizer"
    assert (dead.source_partition, dead.source_offset, dead.event_time) == (0, 3, 120)
    assert Candle.from_bytes(dead.payload()).close == 99.0


def test_identical_redelivery_is_a_replay_not_late() -> None:
    f = engine()
    f.process(records(0, "BTC", [1, 2, 3]))
    out = f.process([Record(0, 3, b"BTC", candle("BTC", 2))])
    assert out.features == [] and out.dead == []
    assert out.replayed == {"BTC": 1}
    assert out.commit == {0: 4}


def test_offsets_below_the_position_are_skipped() -> None:
    f = engine()
    f.process(records(0, "BTC", [1, 2, 3]))
    out = f.process(records(0, "BTC", [2, 3, 4], first_offset=1))
    assert [v.time for v in out.features] == [240]
    assert out.replayed == {} and out.dead == []


def test_unreadable_record_is_dead_lettered_with_schema_reason() -> None:
    f = engine()
    out = f.process([Record(1, 0, b"BTC", orjson.dumps({"symbol": "BTC"}))])
    assert out.features == []
    assert out.dead[0].codes == ["schema"]
    assert out.dead[0].source_partition == 1 and out.commit == {1: 1}


def test_stale_partitions() -> None:
    f = engine()
    assert f.stale(records(0, "BTC", [1, 2])) == {0: 0}
    f.process(records(0, "BTC", [1, 2]))
    assert f.stale(records(0, "BTC", [3, 4], first_offset=2)) == {}
    assert f.stale(records(0, "BTC", [1, 2, 3], first_offset=1)) == {}
    assert f.stale(records(0, "BTC", [9], first_offset=7)) == {0: 7}
    assert f.stale(records(2, "ETH", [1], first_offset=5)) == {2: 5}


def test_rebuild_then_continue_equals_uninterrupted() -> None:
    log = records(0, "BTC", list(range(1, 10)))
    log.insert(5, Record(0, 99, b"BTC", candle("BTC", 3, close=7.0)))  # late
    log.insert(7, Record(0, 99, b"BTC", candle("BTC", 4)))  # replay
    log += records(0, "ETH", list(range(1, 10)))
    log = [Record(r.partition, i, r.key, r.value) for i, r in enumerate(log)]
    key = lambda v: (v.symbol, v.time, v.warm, v.features)  # noqa: E731
    for cut in range(1, len(log)):
        uninterrupted = engine()
        uninterrupted.process(log[:cut])
        expect = uninterrupted.process(log[cut:])
        f = engine()
        f.rebuild(0, log, upto=cut)  # only offsets below the cut count
        assert f.stale(log[cut:]) == {}
        got = f.process(log[cut:])
        assert [key(v) for v in got.features] == [key(v) for v in expect.features]
        assert [d.to_bytes() for d in got.dead] == [d.to_bytes() for d in expect.dead] or [
            d.source_offset for d in got.dead
        ] == [d.source_offset for d in expect.dead]
        assert got.replayed == expect.replayed and got.commit == expect.commit


def test_retain_forgets_revoked_partitions() -> None:
    f = engine()
    f.process(records(0, "BTC", [1]) + records(1, "ETH", [1]) + records(2, "SOL", [1]))
    assert f.symbol_count == 3
    f.retain({1})
    assert set(f.partitions) == {1} and f.symbol_count == 1


def test_fast_encoding_equals_the_schema_encoding() -> None:
    """Vectors of a toy feature set (no binary layout) are published as their JSON."""
    f = engine()
    vectors = f.process(records(0, "BTC", [1, 2, 3, 4])).features
    vectors.append(vectors[-1].model_copy(update={"features": {"a": None, "b": float("inf")}}))
    for v in vectors:
        assert encode_vector(v) == v.to_bytes()
        assert FeatureVector.from_bytes(encode_vector(v)) == FeatureVector.from_bytes(v.to_bytes())


def test_the_batch_candle_reader_reads_what_candle_accepts() -> None:
    """``read_candles`` (the featurizer's decode, one validation per batch) gives, value by value,
    what ``Candle.from_bytes`` gives, field for field and type for type, for real candles as the
    validator writes them and for altered ones; what the schema refuses is the same
    ``SchemaError``, message included, and never takes its neighbours with it."""
    import pandas as pd

    from services.common.errors import SchemaError
    from services.common.schemas import read_candles
    from services.common.settings import Settings
    from tests.candle_variants import candle_variants

    fields = ["time", "open", "high", "low", "close", "volumefrom", "volumeto"]
    path = Settings().shared_data_dir / "btcusdt_1m_2023-2024.parquet"
    rows = pd.read_parquet(path, columns=fields).iloc[:200].to_dict("records")
    good = [
        Candle(symbol="BTC", time=int(r["time"]), **{k: float(r[k]) for k in fields[1:]})
        for r in rows
    ]
    good[1] = good[1].model_copy(update={"ingested_at": 1.7e9})
    values = [c.to_bytes() for c in good]
    raw = values + candle_variants(values[0])
    raw += [values[2] + b"," + values[3], b" " + values[4]]  # two candles in one; a space
    raw += [values[5][:40] + b"}", b"{" + values[5][40:]]  # one candle cut in two

    def outcome(candle: Any) -> tuple[str, Any]:
        if isinstance(candle, SchemaError):
            return "refused", str(candle)
        return "read", [(k, type(v), v) for k, v in candle.__dict__.items()]

    def reference(value: bytes) -> tuple[str, Any]:
        try:
            return outcome(Candle.from_bytes(value))
        except SchemaError as exc:
            return outcome(exc)

    want = [reference(v) for v in raw]
    assert sum(kind == "read" for kind, _ in want) == len(good) + 6  # 5 variants, a space
    assert [outcome(c) for c in read_candles(raw)] == want  # mixed: every value on its own
    assert [outcome(c) for c in read_candles(values)] == want[: len(values)]  # all good
    for i in range(len(good), len(raw)):  # each odd value among good ones
        batch = [*values[:3], raw[i], *values[3:6]]
        assert [outcome(c) for c in read_candles(batch)] == [reference(v) for v in batch]
    cut = values[5].index(b",", 40)  # a candle cut at a comma, and two candles in one value:
    parts = [values[5][:cut], values[5][cut + 1 :], values[2] + b"," + values[3]]
    joined = read_candles(parts)  # joined, they would make three candles from three values
    assert [outcome(c) for c in joined] == [reference(v) for v in parts]
    assert read_candles([]) == []


def test_published_records_are_keyed_by_symbol_and_counted() -> None:
    """What the shell publishes: one (symbol key, vector bytes) per accepted candle, in order,
    counted per symbol; ``features`` reads the very bytes back."""
    f = engine()
    out = f.process(records(0, "BTC", [1, 2]) + records(0, "ETH", [1, 2, 3], first_offset=2))
    assert [k for k, _ in out.published] == [b"BTC"] * 2 + [b"ETH"] * 3
    assert out.emitted == {"BTC": 2, "ETH": 3}
    assert [encode_vector(v) for v in out.features] == [v for _, v in out.published]
