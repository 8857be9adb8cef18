"""Every message schema round-trips through bytes, and bad payloads get readable errors."""

from __future__ import annotations

import pytest

from services.common.errors import SchemaError
from services.common.schemas import (
    Candle,
    DeadLetter,
    DeadLetterReason,
    FeatureVector,
    Message,
    ModelEvent,
    Prediction,
    RawBatch,
)

CANDLE = dict(
    symbol="BTC",
    time=1_700_000_040,
    open=36_000.5,
    high=36_010.0,
    low=35_990.0,
    close=36_005.0,
    volumefrom=12.5,
    volumeto=450_000.0,
)

EXAMPLES: list[Message] = [
    Candle(**CANDLE),
    RawBatch(
        batch_id="BTC:1:2",
        symbol="BTC",
        source="replay",
        fetched_at=1.5,
        candles=[{**CANDLE, "conversionType": "direct"}, {"time": None}],
    ),
    DeadLetter.wrap(
        b"\x00not json",
        stage="validator",
        source_topic="ticks.raw",
        source_partition=1,
        source_offset=7,
        reasons=[DeadLetterReason(code="not_json", message="payload is not JSON")],
    ),
    FeatureVector(
        symbol="BTC",
        time=1_700_000_040,
        feature_version="v1-abc",
        warm=True,
        features={"rv_5m": 0.001, "gap_feature": None},
    ),
    Prediction(
        symbol="BTC",
        time=1_700_000_040,
        rv=0.004,
        log_rv=-5.52,
        model_name="m",
        model_version="3",
        role="champion",
        feature_version="v1-abc",
    ),
    ModelEvent(
        event="promoted", model_name="m", version="3", alias="champion", metrics={"qlike": 0.12}
    ),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: Message) -> None:
    data = msg.to_bytes()
    assert type(msg).from_bytes(data) == msg
    assert msg.schema_version == 1


def test_dead_letter_keeps_original_bytes() -> None:
    dl = EXAMPLES[2]
    assert isinstance(dl, DeadLetter)
    assert DeadLetter.from_bytes(dl.to_bytes()).payload() == b"\x00not json"
    assert dl.codes == ["not_json"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"not json", "Candle: (root): Invalid JSON"),
        (b'{"symbol":"BTC"}', "time: Field required"),
        ({**CANDLE, "high": "NaN"}, "high: Input should be a valid number"),
        ({**CANDLE, "symbol": "btc!"}, "symbol: String should match pattern"),
        ({**CANDLE, "extra": 1}, "extra: Extra inputs are not permitted"),
        ({**CANDLE, "schema_version": 2}, "schema_version: Input should be 1"),
        ({**CANDLE, "time": 1.5}, "time: Input should be a valid integer"),
    ],
)
def test_bad_candles_are_rejected_readably(payload: object, expected: str) -> None:
    import orjson

    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    with pytest.raises(SchemaError) as info:
        Candle.from_bytes(data)
    assert expected in str(info.value)


def test_infinite_float_rejected() -> None:
    with pytest.raises(SchemaError, match="high: Input should be a finite number"):
        Candle.from_dict({**CANDLE, "high": float("inf")})


def test_raw_batch_id_is_deterministic() -> None:
    rows = [{"time": 60}, {"time": 120}]
    assert RawBatch.make_id("BTC", rows) == "BTC:60:120"
