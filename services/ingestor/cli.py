"""``volstream ingest live|backfill|replay`` (a sub-app of the ``volstream`` CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

ingest_app = typer.Typer(help="Feed ticks.raw: poll CryptoCompare, backfill, or replay files.")

Symbols = Annotated[
    str | None, typer.Option("--symbols", help="comma-separated, e.g. BTC,ETH (default SYMBOLS)")
]
Metrics = Annotated[int | None, typer.Option(help="metrics port (default METRICS_PORT, 0: off)")]


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_app, name="ingest")


def _run(overrides: dict[str, Any], symbols: str | None = None) -> None:
    """Build settings with the command's overrides, then run like ``python -m``."""
    from services.common.settings import get_settings
    from services.ingestor.app import serve
    from services.ingestor.settings import IngestorSettings

    settings = get_settings()
    if symbols:
        upper = [s.strip().upper() for s in symbols.split(",") if s.strip()]
        settings = settings.model_copy(update={"symbols": upper})
    update = {k: v for k, v in overrides.items() if v is not None}
    cfg = IngestorSettings.model_validate({**IngestorSettings().model_dump(), **update})
    raise typer.Exit(serve(settings, cfg))


@ingest_app.command("live")
def live(
    symbols: Symbols = None,
    interval: Annotated[
        float | None, typer.Option(help="period of the aligned schedule (default 60 s)")
    ] = None,
    metrics_port: Metrics = None,
) -> None:
    """Poll CryptoCompare (or the emulator) until Ctrl-C: a week of history first (warm from
    the first minute), then each minute just after it closes, gap-free from the checkpoint."""
    _run({"mode": "live", "poll_interval_s": interval, "metrics_port": metrics_port}, symbols)


@ingest_app.command("backfill")
def backfill(
    days: Annotated[float, typer.Option(help="how many days back")] = 1.0,
    symbols: Symbols = None,
    metrics_port: Metrics = None,
) -> None:
    """Page back N days (2000 rows a call) and publish oldest first, then exit; prints what it
    fetched and skipped per symbol, and refuses (exit 1) a range behind data already published."""
    _run({"mode": "backfill", "backfill_days": days, "metrics_port": metrics_port}, symbols)


@ingest_app.command("replay")
def replay(
    file: Annotated[Path, typer.Option("--file", help="Parquet (shared layout) or CC JSON")],
    speed: Annotated[str, typer.Option(help="multiple of real time, or 'max'")] = "max",
    symbol: Annotated[str | None, typer.Option(help="default: from the file name")] = None,
    chunk: Annotated[int | None, typer.Option(help="candles per RawBatch")] = None,
    resume: Annotated[bool, typer.Option(help="continue after the replay checkpoint")] = False,
    metrics_port: Metrics = None,
) -> None:
    """Replay real history into ticks.raw at X times real time or as fast as possible."""
    _run(
        {
            "mode": "replay",
            "replay_file": file,
            "replay_speed": speed,
            "replay_symbol": symbol,
            "chunk_size": chunk,
            "replay_resume": resume,
            "metrics_port": metrics_port,
        }
    )
