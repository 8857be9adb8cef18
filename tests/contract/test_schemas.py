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


# --- the binary wire format of FeatureVector (services/common/vector_codec.py) --------------


def layout_vector(**changes: object) -> FeatureVector:
    """A vector of the feature module's layout: every name, in order, one undefined."""
    from services.common.features import FEATURE_NAMES, FEATURE_VERSION

    features = {n: i / 7 - 3.0 for i, n in enumerate(FEATURE_NAMES)} | {"lrv_60m": None}
    fields = dict(symbol="BTC", time=1_700_000_040, feature_version=FEATURE_VERSION, warm=True)
    fields |= dict(features=features, ingested_at=1_700_000_101.25, emitted_at=1_700_000_101.5)
    return FeatureVector(**(fields | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fv",
    [
        layout_vector(),
        layout_vector(warm=False, ingested_at=None, symbol="X1"),
        layout_vector(features=dict.fromkeys(layout_vector().features, -1e-300)),
    ],
    ids=["warm", "cold-no-ingest", "tiny"],
)
def test_binary_vector_round_trips_and_reads_like_json(fv: FeatureVector) -> None:
    from services.common.vector_codec import MAGIC, decode, encode, head_of, warm_of

    data = encode(fv)
    assert data[0] == MAGIC
    assert (
        decode(data)
        == fv
        == FeatureVector.from_bytes(data)
        == FeatureVector.from_bytes(fv.to_bytes())
    )
    assert list(decode(data).features) == list(fv.features)  # the layout's order
    head = head_of(data)
    assert (head.symbol, head.time, head.warm, head.ingested_at) == (
        fv.symbol,
        fv.time,
        fv.warm,
        fv.ingested_at,
    )
    assert warm_of(data) is warm_of(fv.to_bytes()) is fv.warm


def test_binary_vector_byte_layout_is_the_documented_one() -> None:
    """Header fields at their documented offsets, then float64 values in layout order."""
    import struct

    from services.common.features import FEATURE_NAMES, FEATURE_VERSION
    from services.common.vector_codec import encode

    fv = layout_vector()
    data = encode(fv)
    ver = FEATURE_VERSION.encode()
    head = struct.unpack_from("<BBHqddBB", data)
    assert head == (
        0xF1,
        1,
        len(FEATURE_NAMES),
        fv.time,
        1_700_000_101.25,
        1_700_000_101.5,
        3,
        len(ver),
    )
    assert data[30:33] == b"BTC" and data[33 : 33 + len(ver)] == ver
    values = struct.unpack_from(f"<{len(FEATURE_NAMES)}d", data, 33 + len(ver))
    assert len(data) == 33 + len(ver) + 8 * len(FEATURE_NAMES)
    for name, got in zip(FEATURE_NAMES, values, strict=True):
        want = fv.features[name]
        assert got == want if want is not None else got != got, name


def test_binary_vector_writes_infinity_as_json_does() -> None:
    """JSON cannot hold an infinity (orjson writes null): neither does the binary format."""
    from services.common.vector_codec import decode, encode_values

    fv = layout_vector()
    values = [float("inf") if n == "rv_5m" else v for n, v in fv.features.items()]
    data = encode_values("BTC", fv.time, fv.feature_version, True, values, None, 1.0)
    assert decode(data).features["rv_5m"] is None


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d[:-8], "bytes, expected"),
        (lambda d: d[:20], "shorter than its header"),
        (lambda d: b"\xf7" + d[1:], "binary vector format byte 0xf7"),
        (lambda d: d[:1] + b"\x02" + d[2:], "binary vector flags 0x02"),
        (lambda d: d[:30] + b"bt" + d[32:], "symbol b'btC'"),
    ],
    ids=["truncated", "short", "format", "flags", "symbol"],
)
def test_bad_binary_vectors_are_rejected_readably(mutate: object, expected: str) -> None:
    from services.common.vector_codec import encode

    data = mutate(encode(layout_vector()))  # type: ignore[operator]
    with pytest.raises(SchemaError, match="FeatureVector: .*" + expected.replace("(", r"\(")):
        FeatureVector.from_bytes(data)


def test_binary_vector_of_an_unknown_version_is_refused() -> None:
    from services.common.vector_codec import encode

    with pytest.raises(ValueError, match="features are not its layout"):
        encode(EXAMPLES[3])  # type: ignore[arg-type]  (a toy version, two features)
