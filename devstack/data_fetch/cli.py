"""``volstream data fetch`` (and ``data demo-dir``): real minute candles from Binance's archives.

``volstream data fetch --source binance --symbol BTCUSDT --from 2023-01 --to 2024-12
--output data/btcusdt.parquet`` (or ``--lake``). Errors name the archive file and exit 1; nothing
is written unless every archive of every pair was verified and read.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from devstack.data_fetch import core, demo_data
from devstack.data_fetch.app import Fetcher, fetch_pair, write_lake, write_parquet
from devstack.data_fetch.settings import DataFetchSettings

data_app = typer.Typer(
    help="Real market history from public archives (Binance klines).", no_args_is_help=True
)
log = logging.getLogger("volstream.data_fetch")


class Source(StrEnum):
    binance = "binance"


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("fetch")
def fetch(
    symbol: Annotated[
        list[str], typer.Option("--symbol", help="Binance pair, e.g. BTCUSDT (repeatable)")
    ],
    start: Annotated[str, typer.Option("--from", help="first month, YYYY-MM")],
    end: Annotated[str, typer.Option("--to", help="last month, YYYY-MM (the current one: daily)")],
    source: Annotated[Source, typer.Option(help="the archive")] = Source.binance,
    base_url: Annotated[
        str | None, typer.Option(help="archive host [default: DATA_FETCH_BASE_URL or public]")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            help="Parquet in the shared layout; with several pairs use {pair} or {symbol}"
        ),
    ] = None,
    to_lake: Annotated[
        bool, typer.Option("--lake", help="merge into the lake under DATA_DIR instead")
    ] = False,
    as_symbol: Annotated[
        list[str] | None,
        typer.Option("--as", help="PAIR=SYMBOL, the lake symbol of a pair (default: drop quote)"),
    ] = None,
) -> None:
    """Download, verify (SHA-256) and convert 1-minute klines; resumable and idempotent."""
    pairs = [s.strip().upper() for s in symbol if s.strip()]
    if (output is None) == (not to_lake):
        raise typer.BadParameter("give exactly one of --output FILE.parquet or --lake")
    if output is not None and len(pairs) > 1 and not {"{pair}", "{symbol}"} & _fields(output):
        raise typer.BadParameter("several pairs need {pair} or {symbol} in --output")
    try:
        overrides = dict(_pair_map(m) for m in as_symbol or [])
        names = {p: core.lake_symbol(p, overrides) for p in pairs}
        today = datetime.now(UTC).date()
        plans = {p: core.plan_archives(p, start, end, today) for p in pairs}
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    settings = DataFetchSettings()
    run_fetch(settings, plans, names, base_url=base_url, output=output, today=today)


def run_fetch(
    settings: DataFetchSettings,
    plans: dict[str, list[core.Archive]],
    names: dict[str, str],
    *,
    today: date,
    base_url: str | None = None,
    output: Path | None = None,
    report_to_stderr: bool = False,
) -> list[core.Summary]:
    """Fetch every pair, then write to ``output`` (or the lake when it is None).

    A DataFetchError is one line on stderr naming the file, and exit code 1.
    """
    from services.common.logging import configure_logging
    from services.common.settings import get_settings

    configure_logging(get_settings().log_level)  # retries and warnings as JSON lines on stderr
    fetcher = Fetcher(settings, base_url)
    try:
        frames = {pair: fetch_pair(fetcher, plan, today) for pair, plan in plans.items()}
    except core.DataFetchError as exc:
        typer.echo(f"error: {exc}; nothing written", err=True)
        raise typer.Exit(1) from exc
    finally:
        fetcher.close()
    summaries = []
    for pair, frame in frames.items():
        if output is not None:
            target = Path(str(output).format(pair=pair, symbol=names[pair]))
            write_parquet(frame, target)
            where = str(target)
        else:
            new = write_lake(get_settings().data_dir, names[pair], frame)
            where = f"lake symbol={names[pair]} ({new} new rows)"
        summary = core.summarize(pair, frame)
        summaries.append(summary)
        typer.echo(_describe(summary, where), err=report_to_stderr)
    typer.echo(
        f"archives: {len(fetcher.downloaded)} downloaded, {len(fetcher.cached)} cached",
        err=report_to_stderr,
    )
    return summaries


@data_app.command("demo-dir")
def demo_dir(
    fetch_missing: Annotated[
        bool,
        typer.Option("--fetch", help="fetch the demo's data when missing (or VOLSTREAM_FETCH=1)"),
    ] = False,
) -> None:
    """Print the directory holding the demo's two-year file; say how to get it when absent."""
    from services.common.settings import get_settings

    settings = DataFetchSettings()
    shared = get_settings().shared_data_dir
    found = demo_data.locate(shared, settings.dir)
    if found is None and (fetch_missing or demo_data.fetch_wanted()):
        typer.echo(f"fetching the demo's data into {settings.dir}", err=True)
        today = datetime.now(UTC).date()
        pair = demo_data.DEMO_PAIR
        plan = core.plan_archives(pair, demo_data.DEMO_FROM, demo_data.DEMO_TO, today)
        target = settings.dir / demo_data.DEMO_FILE
        run_fetch(
            settings, {pair: plan}, {pair: "BTC"}, today=today, output=target, report_to_stderr=True
        )
        found = settings.dir
    if found is None:
        typer.echo(demo_data.missing_message(shared, settings.dir), err=True)
        raise typer.Exit(3)
    typer.echo(str(found))


def _describe(s: core.Summary, where: str) -> str:
    if not s.candles:
        return f"{s.pair}: no candles -> {where}"
    iso = [
        datetime.fromtimestamp(t or 0, UTC).strftime("%Y-%m-%d %H:%M") for t in (s.first, s.last)
    ]
    return (
        f"{s.pair}: {s.candles} candles {iso[0]}..{iso[1]} UTC, {s.gaps} gaps"
        f" ({s.missing_minutes} missing minutes, left as gaps) -> {where}"
    )


def _pair_map(text: str) -> tuple[str, str]:
    pair, sep, name = text.partition("=")
    if not sep or not pair.strip() or not name.strip():
        raise ValueError(f"--as expects PAIR=SYMBOL, got {text!r}")
    return pair.strip().upper(), name.strip().upper()


def _fields(path: Path) -> set[str]:
    return {f"{{{name}}}" for name in ("pair", "symbol") if f"{{{name}}}" in str(path)}
