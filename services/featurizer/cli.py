"""``volstream lake …`` and ``volstream featurizer-parity``: look into the lake, check the stream.

(``volstream features``, the batch path, lives in ``batch.py``.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

lake_app = typer.Typer(help="The Parquet lake of validated candles.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(lake_app, name="lake")
    app.command("featurizer-parity")(featurizer_parity)


@lake_app.command("read")
def lake_read(
    symbol: Annotated[str, typer.Option(help="base symbol, e.g. BTC")] = "BTC",
    start: Annotated[str | None, typer.Option(help="first time (date or unix s)")] = None,
    end: Annotated[str | None, typer.Option(help="end time, exclusive")] = None,
    output: Annotated[Path | None, typer.Option(help="write the candles to this Parquet")] = None,
) -> None:
    """Summarise (or export) the lake's candles of a symbol in [start, end)."""
    from services.common.lake import read_lake
    from services.common.settings import get_settings

    frame = read_lake(get_settings().data_dir, symbol.upper(), _moment(start), _moment(end))
    if output is not None:
        frame.to_parquet(output, index=False)
    if frame.empty:
        typer.echo(f"{symbol}: no candles")
        return
    first, last = int(frame["time"].iloc[0]), int(frame["time"].iloc[-1])
    gaps = int(((frame["time"].diff().fillna(60)) > 60).sum())
    typer.echo(f"{symbol}: {len(frame)} candles, {first}..{last}, {gaps} gaps")


def featurizer_parity(
    start: Annotated[str, typer.Option(help="first UTC day streamed, e.g. 2024-12-01")],
    days: Annotated[float, typer.Option(help="days streamed")] = 14,
    symbol: Annotated[str, typer.Option(help="symbol the candles were published as")] = "BTC",
    timeout: Annotated[float, typer.Option(help="seconds to wait for the vectors")] = 120,
) -> None:
    """Check the ``features`` topic against the batch path on the same slice of the real file."""
    from services.common.features import FEATURE_NAMES, featurize_many
    from services.common.settings import get_settings
    from services.featurizer.parity import compare
    from services.featurizer.replay import collect, load_candles

    settings = get_settings()
    frame = load_candles(settings.shared_data_dir / "btcusdt_1m_2023-2024.parquet", start, days)
    got = asyncio.run(collect(settings, {symbol: len(frame)}, timeout_s=timeout))
    lo, hi = int(frame["time"].iloc[0]), int(frame["time"].iloc[-1])
    vectors = [v for (s, t), vs in got.items() if s == symbol and lo <= t <= hi for v in vs]
    report = compare(vectors, featurize_many(frame), FEATURE_NAMES)
    typer.echo(
        f"{symbol}: {report.rows} vectors ({report.warm_rows} warm), {report.cells} cells, "
        f"{len(report.missing)} missing, {len(report.mismatches)} mismatches"
    )
    for line in report.mismatches[:10]:
        typer.echo(f"  {line}")
    raise typer.Exit(0 if report.ok else 1)


def _moment(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value
