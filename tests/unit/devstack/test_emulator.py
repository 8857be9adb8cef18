"""The emulator reproduces the API's confirmed behaviour on the real recorded data."""

from __future__ import annotations

import httpx
import orjson
import pytest

from devstack.emulator import Emulator
from tests.unit.conftest import DAY, START, make_emulator

Q = {"fsym": "BTC", "tsym": "USD"}


async def get(em: Emulator, path: str, **params) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=em.app()), base_url="http://e"
    ) as c:
        return await c.get(path, params=params)


async def doc(em: Emulator, path: str = "/data/v2/histominute", **params) -> dict:
    resp = await get(em, path, **params)
    assert resp.status_code == 200
    return orjson.loads(resp.content)


async def test_limit_n_returns_n_plus_one_rows_ending_with_the_open_minute(emulator) -> None:
    d = await doc(emulator, **Q, limit=10)
    rows = d["Data"]["Data"]
    assert len(rows) == 11
    assert [r["time"] for r in rows] == list(range(START - 600, START + 60, 60))
    assert (d["Data"]["TimeFrom"], d["Data"]["TimeTo"]) == (START - 600, START)
    # the open minute is partial: half-way through it, half the volume of the recorded candle
    recorded = emulator.datasets["BTC"].row(START)
    assert rows[-1]["volumefrom"] == pytest.approx(recorded["volumefrom"] * 0.5)
    assert rows[-2] == emulator.datasets["BTC"].row(START - 60)


async def test_to_ts_is_inclusive_and_pages_back(emulator) -> None:
    rows = (await doc(emulator, **Q, limit=3, toTs=START - 3600))["Data"]["Data"]
    assert [r["time"] for r in rows] == [START - 3600 - 180 + 60 * i for i in range(4)]
    assert rows[-1]["volumefrom"] == emulator.datasets["BTC"].row(START - 3600)["volumefrom"]


async def test_limit_is_capped_at_2000(emulator) -> None:
    rows = (await doc(emulator, **Q, limit=5000))["Data"]["Data"]
    assert len(rows) == 2001


async def test_v1_envelope_and_real_values(emulator) -> None:
    d = await doc(emulator, "/data/histominute", **Q, limit=1, toTs=START - DAY)
    assert isinstance(d["Data"], list) and d["FirstValueInArray"] is True
    first = emulator.datasets["BTC"].rows[0]  # the recorded week starts a day before START
    assert d["Data"][-1] == {**first, "time": START - DAY}
    assert d["Data"][0]["close"] == 0  # before the history begins: zero candles


async def test_minute_data_only_for_the_last_7_days(emulator) -> None:
    d = await doc(emulator, **Q, limit=10, toTs=START - 8 * DAY)
    assert d["Response"] == "Error" and "only available for the last 7 days" in d["Message"]


async def test_hourly_aggregates_the_minutes(emulator) -> None:
    d = await doc(emulator, "/data/v2/histohour", **Q, limit=2, toTs=START - 7200)
    rows = d["Data"]["Data"]
    hour = START - 7200 - (START % 3600)
    minutes = [emulator.datasets["BTC"].row(hour + 60 * i) for i in range(60)]
    assert rows[-1]["time"] == hour
    assert rows[-1]["high"] == max(m["high"] for m in minutes)
    assert rows[-1]["close"] == minutes[-1]["close"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tsym": "USD"}, "fsym is a required param."),
        ({"fsym": "BTC999", "tsym": "USD"}, "There is no data for the symbol BTC999 ."),
        (
            {**Q, "e": "Nowhere"},
            "e param is not valid the market does not exist for this coin pair",
        ),
    ],
)
async def test_errors_are_200_bodies(emulator, params, message) -> None:
    d = await doc(emulator, **params)
    assert d["Response"] == "Error" and d["Message"] == message


async def test_unknown_path_and_api_key() -> None:
    em = make_emulator(api_key="k")
    assert (await doc(em, "/data/nothing"))["Message"] == "Path does not exist"
    assert (await doc(em, **Q))["Type"] == 1
    assert (await doc(em, **Q, api_key="k"))["Response"] == "Success"


async def test_clock_advances_and_symbols_share_it(emulator) -> None:
    emulator.clock.set(advance_s=3600)
    btc = (await doc(emulator, **Q, limit=1))["Data"]["Data"]
    eth = (await doc(emulator, fsym="ETH", tsym="USD", limit=1))["Data"]["Data"]
    assert btc[-1]["time"] == eth[-1]["time"] == START + 3600
    assert btc[-1]["open"] != eth[-1]["open"]  # different real weeks


async def test_faults_are_set_at_runtime_and_recorded(emulator) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emulator.app()), base_url="http://e"
    ) as c:
        r = await c.post("/_emulator/faults", json={"probabilities": {"http_500": 1.0}})
        assert r.status_code == 200
        assert (await c.get("/data/v2/histominute", params=Q)).status_code == 500
        await c.post("/_emulator/faults", json={"probabilities": {"http_429": 1.0}})
        r = await c.get("/data/v2/histominute", params=Q)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        await c.post("/_emulator/faults", json={"probabilities": {"rate_limit": 1.0}})
        assert orjson.loads((await c.get("/data/v2/histominute", params=Q)).content)["Type"] == 99
        await c.post("/_emulator/faults", json={"probabilities": {"malformed": 1.0}})
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads((await c.get("/data/v2/histominute", params=Q)).content)
        await c.post("/_emulator/faults", json={"probabilities": {"duplicate": 1.0}})
        rows = orjson.loads((await c.get("/data/v2/histominute", params=Q)).content)
        times = [r["time"] for r in rows["Data"]["Data"]]
        assert times[-3] == times[-2] and times[-1] == START  # the open minute stays last
        bad = await c.post("/_emulator/faults", json={"probabilities": {"nope": 1}})
        assert bad.status_code == 400
        await c.delete("/_emulator/faults")
        state = orjson.loads((await c.get("/_emulator/state")).content)
    assert state["faults"]["probabilities"] == {}
    assert state["duplicated"] == [["BTC", START - 60]]
    assert set(state["injected"]) == {
        "http_500",
        "http_429",
        "rate_limit",
        "malformed",
        "duplicate",
    }


async def test_row_faults_keep_every_recorded_row(emulator) -> None:
    from devstack.emulator_core import Faults

    emulator.faults = Faults({"out_of_order": 1.0, "null_fields": 1.0}, seed=3)
    rows = (await doc(emulator, **Q, limit=20))["Data"]["Data"]
    assert len(rows) == 22
    complete = [
        r
        for r in rows
        if all(r.get(k) is not None for k in ("time", "close", "high", "low", "open"))
    ]
    times = [r["time"] for r in rows if r.get("time") is not None]
    assert sorted({r["time"] for r in complete}) == list(range(START - 1200, START + 60, 60))
    assert times != sorted(times)
