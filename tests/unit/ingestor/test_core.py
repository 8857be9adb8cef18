"""Pure ingestion logic against real CryptoCompare responses and the documented error bodies."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from services.common.errors import ConfigError
from services.common.schemas import RawBatch
from services.ingestor import core
from services.ingestor.errors import (
    ApiError,
    AuthRequired,
    HistoryUnavailable,
    MalformedResponse,
    RateLimited,
)

CC = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cryptocompare"

RATE_LIMIT = (
    b'{"Response":"Error","Message":"You are over your rate limit please upgrade your account!",'
    b'"HasWarning":false,"Type":99,"RateLimit":{"calls_made":{"second":1,"minute":3,"hour":4,'
    b'"day":7773,"month":11627,"total_calls":52622},"max_calls":{"second":20,"minute":300,'
    b'"hour":3000,"day":7500,"month":50000}},"Data":{}}'
)


def test_parses_the_genuine_v1_envelope() -> None:
    page = core.parse_body((CC / "histominute_envelope_sample.json").read_bytes())
    assert len(page.rows) == 2001
    assert page.time_from == page.rows[0]["time"] == 1733798400
    assert page.time_to == page.rows[-1]["time"]


def test_parses_the_v2_envelope() -> None:
    page = core.parse_body((CC / "cc_histominute_BTCUSDT_2024-03-01_7d.json").read_bytes())
    assert len(page.rows) == 10080
    assert (page.time_from, page.time_to) == (1709251200, 1709855940)
    assert set(page.rows[0]) >= {"time", "open", "high", "low", "close", "volumefrom"}


def test_success_with_empty_data_is_an_empty_page() -> None:
    assert core.parse_body(b'{"Response":"Success","Data":{}}').rows == []


def test_rate_limit_body_waits_for_the_overflowed_window() -> None:
    # the captured body: day calls 7773 >= 7500, the first window to have overflowed
    with pytest.raises(RateLimited) as exc:
        core.parse_body(RATE_LIMIT)
    assert exc.value.retry_after == 86400
    assert exc.value.retryable


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (
            {"Message": "You need a valid auth key or api key to access this endpoint", "Type": 1},
            AuthRequired,
        ),
        ({"Message": "There is no data for the symbol BTC999 .", "Type": 2}, ApiError),
        ({"Message": "Path does not exist", "Type": 0}, ApiError),
        (
            {"Message": "Minute data is only available for the last 7 days.", "Type": 2},
            HistoryUnavailable,
        ),
    ],
)
def test_error_bodies_map_to_types(body: dict, kind: type) -> None:
    with pytest.raises(kind) as exc:
        core.parse_body(orjson.dumps({"Response": "Error", "Data": {}, **body}))
    assert str(exc.value) == body["Message"]
    assert type(exc.value) is kind and not exc.value.retryable


@pytest.mark.parametrize(
    "body",
    [
        b'{"Response":"Success","Data":{"Data":[{"ti',
        b"<html>502</html>",
        b"[1,2]",
        b'{"Response":"Success","Data":{"Data":"x"}}',
    ],
)
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(MalformedResponse):
        core.parse_body(body)


def test_select_new_keeps_bad_rows_and_drops_old_and_open() -> None:
    rows = [{"time": 60}, {"time": 180}, {"time": 120}, {"close": 1}, {"time": "x"}, {"time": 240}]
    assert core.select_new(rows, after=60, open_time=240) == [
        {"time": 180},
        {"time": 120},
        {"close": 1},
        {"time": "x"},
    ]
    assert core.select_new(rows, after=None, open_time=None) == rows


def test_page_back_covers_exactly_the_gap() -> None:
    # gap of minutes 300..540 after a checkpoint at 240, newest page starts at 600
    req = core.page_back(oldest=600, after=240)
    assert req is not None
    rows = list(range(req.to_ts - req.limit * 60, req.to_ts + 60, 60))  # N+1 rows, inclusive
    assert rows == [300, 360, 420, 480, 540]


def test_page_back_is_bounded_by_the_page_limit() -> None:
    req = core.page_back(oldest=60 * 10_000, after=0, page_limit=2000)
    assert req == core.PageRequest(to_ts=60 * 9_999, limit=2000)


def test_encoded_batches_equal_the_model_bytes() -> None:
    rows = [{"time": 60 * i, "close": float(i), "high": None} for i in range(7)]
    encoded = core.encode_batches("ETH", rows, "backfill", 12.5, size=3)
    assert len(encoded) == 3
    for value, chunk in zip(encoded, core.chunks(rows, 3), strict=True):
        model = RawBatch(
            batch_id=RawBatch.make_id("ETH", chunk),
            symbol="ETH",
            source="backfill",
            fetched_at=12.5,
            candles=chunk,
        )
        assert value == model.to_bytes()
        assert RawBatch.from_bytes(value) == model


def test_real_api_without_key_fails_with_guidance() -> None:
    with pytest.raises(ConfigError, match="replay"):
        core.require_api_key("https://min-api.cryptocompare.com", None)
    core.require_api_key("https://min-api.cryptocompare.com", "k")
    core.require_api_key("http://127.0.0.1:8765", None)


def test_speed_parsing() -> None:
    assert core.parse_speed("MAX") is None
    assert core.parse_speed(600) == 600.0
    with pytest.raises(ConfigError):
        core.parse_speed("0")
