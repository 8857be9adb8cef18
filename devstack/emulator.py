"""A local CryptoCompare min-api emulator serving real recorded data, with injectable faults.

``python -m devstack.emulator --port 8765 --speed 60 --faults http_500=0.1,duplicate=0.2``
(also ``volstream emulator ...``). Endpoints: ``/data/v2/histominute``, ``/data/histominute`` (v1),
``/data/v2/histohour``, ``/data/histohour``, plus control routes for tests and demos:

- ``GET /_emulator/state``: simulated now, faults, what was injected (duplicated rows included);
- ``POST /_emulator/faults`` ``{"probabilities": {"http_500": 0.2}, "seed": 1, "slow_s": 3}``;
  ``DELETE /_emulator/faults`` stops them;
- ``POST /_emulator/clock`` ``{"speed": 60, "advance_s": 3600, "lag_s": 2}``.

By default each symbol serves three weeks of the shared two-year file, more than a week of it
behind "now" (``--history-days``, default 8), so a live ingestor can warm its features from the
API alone, as against the real API (7 days of minutes). ``--lag-s`` (default 2) is the
availability lag: a closed minute becomes visible that many seconds after it ends, until then it
is still served as the open minute. ``--rate-limit second=20,minute=300`` refuses calls over
those caps with the API's Type 99 body.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import typer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.emulator_core import (
    AUTH_REQUIRED,
    FAULT_KINDS,
    MINUTE,
    PATH_NOT_FOUND,
    RATE_LIMIT_BODY,
    Dataset,
    EmulatorError,
    Faults,
    RateLimits,
    SimClock,
    envelope,
    error_body,
    floor_minute,
    hour_rows,
    malformed,
    minute_rows,
)

#: The recorded API responses (a week each); the unit tests serve these.
DEFAULT_FILES = {
    "BTC": "cryptocompare/cc_histominute_BTCUSDT_2024-03-01_7d.json",
    "ETH": "cryptocompare/cc_histominute_BTCUSDT_2020-03-09_7d.json",
}
#: What ``volstream emulator`` serves by default: three real weeks of the two-year file per
#: symbol (all BTCUSDT, different periods; shifted onto one clock), so more than the API's week
#: of minutes lies behind "now" and the clock still runs for days.
TWO_YEAR_FILE = "btcusdt_1m_2023-2024.parquet"
DEFAULT_SERIES = {"BTC": "2024-03-01", "ETH": "2023-03-09", "SOL": "2023-08-14"}
SERIES_DAYS = 21.0
QUOTES = {"USD", "USDT"}
EXCHANGES = {"CCCAGG", "BINANCE"}


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status, headers, media_type="application/json")


class Emulator:
    """The state behind the HTTP app: datasets, the clock, the faults, an optional API key."""

    def __init__(
        self,
        datasets: dict[str, Dataset],
        clock: SimClock,
        faults: Faults | None = None,
        api_key: str | None = None,
        lag_s: float = 0.0,
        rate_limits: RateLimits | None = None,
    ) -> None:
        self.datasets = datasets
        self.clock = clock
        self.faults = faults or Faults()
        self.api_key = api_key
        self.lag_s = lag_s
        self.rate_limits = rate_limits or RateLimits()
        self.requests = 0

    def now(self) -> float:
        """Simulated now; it stops at the end of the data (the last minute stays open)."""
        end = max(ds.last for ds in self.datasets.values()) + MINUTE - 1
        return min(self.clock.now(), end)

    def visible_now(self) -> float:
        """What the data shows: a minute closes ``lag_s`` (simulated) seconds after it ends."""
        return self.now() - self.lag_s

    def authorized(self, request: Request) -> bool:
        if not self.api_key:
            return True
        header = request.headers.get("authorization", "")
        return header == f"Apikey {self.api_key}" or request.query_params.get("api_key") == (
            self.api_key
        )

    def rows(self, path: str, params: dict[str, str]) -> tuple[str, list[dict[str, Any]], bool]:
        """The symbol, rows and whether the last row is the open minute (or EmulatorError)."""
        for name in ("fsym", "tsym"):
            if not params.get(name):
                raise EmulatorError(error_body(f"{name} is a required param.", 2, name))
        symbol = params["fsym"].upper()
        if symbol not in self.datasets:
            raise EmulatorError(
                error_body(f"There is no data for the symbol {symbol} .", 2, "fsym")
            )
        if params["tsym"].upper() not in QUOTES or params.get("e", "CCCAGG").upper() not in (
            EXCHANGES
        ):
            msg = "e param is not valid the market does not exist for this coin pair"
            raise EmulatorError(error_body(msg, 2, "e"))
        try:
            hourly = path.endswith("histohour")
            limit = int(params.get("limit", 168 if hourly else 1440))
            to_ts = int(params["toTs"]) if params.get("toTs") else None
        except ValueError as exc:
            raise EmulatorError(error_body(f"bad parameter: {exc}", 2)) from exc
        now, ds = self.visible_now(), self.datasets[symbol]
        if hourly:
            return symbol, hour_rows(ds, now, limit, to_ts), False
        rows = minute_rows(ds, now, limit, to_ts)
        return symbol, rows, bool(rows) and rows[-1]["time"] == floor_minute(now)

    async def history(self, request: Request) -> Response:
        """The histominute/histohour endpoints, faults included."""
        self.requests += 1
        refused = self.rate_limits.admit()
        if refused is not None:
            return json_response(refused)
        fault = self.faults.transport_fault()
        if fault == "slow":
            await asyncio.sleep(self.faults.slow_s)
        elif fault == "http_500":
            return Response("Internal Server Error", 500)
        elif fault == "http_429":
            retry = {"Retry-After": str(int(self.faults.retry_after_s))}
            return json_response(error_body("Too Many Requests", 99), 429, retry)
        elif fault == "rate_limit":
            return json_response(RATE_LIMIT_BODY)
        if not self.authorized(request):
            return json_response(AUTH_REQUIRED)
        path = request.url.path
        try:
            symbol, rows, has_open = self.rows(path, dict(request.query_params))
        except EmulatorError as exc:
            return json_response(exc.body)
        rows = self.faults.mutate(symbol, rows, has_open)
        body = orjson.dumps(envelope(rows, version=2 if "/v2/" in path else 1))
        if fault == "malformed":
            body = malformed(body)
        return Response(body, 200, media_type="application/json")

    async def state(self, request: Request) -> Response:
        f = self.faults
        return json_response(
            {
                "now": self.now(),
                "speed": self.clock.speed,
                "lag_s": self.lag_s,
                "requests": self.requests,
                "rate_limited": self.rate_limits.refused,
                "max_calls": self.rate_limits.max_calls,
                "faults": {"probabilities": f.probabilities, "seed": f.seed, "slow_s": f.slow_s},
                "injected": f.injected,
                "duplicated": [list(d) for d in f.duplicated],
                "symbols": {
                    s: {"first": d.first, "last": d.last} for s, d in self.datasets.items()
                },
            }
        )

    async def set_faults(self, request: Request) -> Response:
        """Replace the fault configuration (DELETE: no faults); the injection record is kept."""
        doc = orjson.loads(await request.body() or b"{}") if request.method == "POST" else {}
        old = self.faults
        try:
            self.faults = Faults(
                probabilities=doc.get("probabilities", {}),
                seed=doc.get("seed", old.seed),
                slow_s=doc.get("slow_s", old.slow_s),
                retry_after_s=doc.get("retry_after_s", old.retry_after_s),
                injected=old.injected,
                duplicated=old.duplicated,
            )
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(asdict(self.faults))

    async def set_clock(self, request: Request) -> Response:
        doc = orjson.loads(await request.body() or b"{}")
        self.clock.set(speed=doc.get("speed"), advance_s=float(doc.get("advance_s", 0.0)))
        self.lag_s = float(doc.get("lag_s", self.lag_s))
        return json_response({"now": self.now(), "speed": self.clock.speed, "lag_s": self.lag_s})

    async def not_found(self, request: Request) -> Response:
        return json_response(PATH_NOT_FOUND)

    def app(self) -> Starlette:
        history = ["/data/v2/histominute", "/data/histominute", "/data/v2/histohour"]
        routes = [Route(p, self.history) for p in [*history, "/data/histohour"]]
        routes += [
            Route("/_emulator/state", self.state),
            Route("/_emulator/faults", self.set_faults, methods=["POST", "DELETE"]),
            Route("/_emulator/clock", self.set_clock, methods=["POST"]),
            Route("/{path:path}", self.not_found),
        ]
        return Starlette(routes=routes)


def load_datasets(files: dict[str, Path], first_time: int) -> dict[str, Dataset]:
    """Every file's first candle at ``first_time``: the symbols share one clock."""
    return {sym: Dataset.from_file(sym, path, first_time) for sym, path in files.items()}


def parse_rate_limit(spec: str) -> dict[str, int]:
    """``second=20,minute=300`` (empty: no limit).

    >>> parse_rate_limit("second=20,minute=300"), parse_rate_limit("")
    ({'second': 20, 'minute': 300}, {})
    """
    pairs = (p.strip().partition("=") for p in spec.split(",") if p.strip())
    return {window: int(cap) for window, _, cap in pairs}


def parse_faults(spec: str) -> dict[str, float]:
    """``http_500=0.1,duplicate=0.2`` (a bare kind means probability 1).

    >>> parse_faults("http_500=0.1,slow")
    {'http_500': 0.1, 'slow': 1.0}
    """
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, _, prob = part.partition("=")
        out[kind] = float(prob) if prob else 1.0
    return out


def default_start(wall: float, ahead_s: float, speed: float) -> float:
    """The simulated start that keeps "now" at or behind the wall clock until the data ends.

    Faster than real time, the clock would otherwise run into the future, and a validator that
    refuses candles from the future would be right to. ``ahead_s`` is the data after the start.
    At real time or slower it is the wall clock itself, so minutes close when they do on the wall.

    >>> default_start(1000.0, ahead_s=600, speed=1.0), default_start(1000.0, 600, speed=3.0)
    (1000.0, 600)
    """
    if speed <= 1:
        return wall
    return floor_minute(wall - max(0.0, ahead_s) * (1 - 1 / speed))


def build(args: argparse.Namespace) -> Emulator:
    """The emulator the command line describes."""
    from services.common.settings import get_settings

    data_dir = get_settings().shared_data_dir
    files = {s.upper(): Path(p) for s, _, p in (d.partition("=") for d in args.dataset)}
    if files:
        datasets = load_datasets(files, first_time=0)
    else:
        datasets = load_series(data_dir / TWO_YEAR_FILE, DEFAULT_SERIES, first_time=0)
    span = max(ds.last for ds in datasets.values()) + MINUTE
    history_s = history_days(args.history_days, span) * 86400
    start = args.start_time
    if start is None:
        start = default_start(time.time(), span - history_s, args.speed)
    first = floor_minute(start - history_s)
    datasets = {s: ds.moved(first) for s, ds in datasets.items()}
    faults = Faults(parse_faults(args.faults), seed=args.seed, slow_s=args.slow_s)
    return Emulator(
        datasets,
        SimClock(start, args.speed),
        faults,
        api_key=args.api_key,
        lag_s=args.lag_s,
        rate_limits=RateLimits(parse_rate_limit(args.rate_limit)),
    )


def history_days(asked: float | None, span_s: float) -> float:
    """``--history-days``, else 8 (more than the API's week) when the data spans over 9 days,
    else all but a day of it (a recorded week), so the clock still has a day to run.

    >>> history_days(None, 21 * 86400), history_days(None, 7 * 86400), history_days(2.0, 0)
    (8.0, 6.0, 2.0)
    """
    if asked is not None:
        return asked
    return 8.0 if span_s > 9 * 86400 else max(0.0, span_s / 86400 - 1.0)


def load_series(path: Path, series: dict[str, str], first_time: int) -> dict[str, Dataset]:
    """Per symbol, :data:`SERIES_DAYS` of the Parquet file from a start date, on one clock."""
    return {
        sym: Dataset.from_parquet(sym, path, _unix(day), SERIES_DAYS, first_time)
        for sym, day in series.items()
    }


def _unix(day: str) -> int:
    from datetime import UTC, datetime

    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emulator", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    p.add_argument(
        "--start-time",
        type=float,
        default=None,
        help="simulated start, unix s (default: now, or earlier when faster than real time so "
        "the clock never passes the wall clock)",
    )
    p.add_argument(
        "--history-days",
        type=float,
        default=None,
        help="data before the start (default 8, more than the API's week; a day less than the "
        "data when it is shorter)",
    )
    p.add_argument(
        "--lag-s", type=float, default=2.0, help="a closed minute shows this long after it ends"
    )
    p.add_argument("--rate-limit", default="", help="e.g. second=20,minute=300 (default: none)")
    p.add_argument("--dataset", action="append", default=[], help="SYMBOL=path.json (repeat)")
    p.add_argument("--faults", default="", help=f"kind=prob,... kinds: {','.join(FAULT_KINDS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slow-s", type=float, default=3.0, help="delay of the 'slow' fault")
    p.add_argument("--api-key", default=None, help="require this key (header or api_key)")
    return p


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args = parser().parse_args(argv)
    emulator = build(args)
    print(f"emulator on http://{args.host}:{args.port} (now={emulator.now():.0f})", flush=True)
    uvicorn.run(
        emulator.app(), host=args.host, port=args.port, log_level="warning", access_log=False
    )


def _command(ctx: typer.Context) -> None:
    """Run the CryptoCompare emulator (options: see ``volstream emulator --help``)."""
    main(list(ctx.args))


def register(app: typer.Typer) -> None:
    """Add ``volstream emulator`` (its options are parsed by :func:`main`)."""
    app.command(
        "emulator",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )(_command)


if __name__ == "__main__":
    main()
