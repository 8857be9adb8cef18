"""``volstream train | evaluate | promote`` (also ``python -m trainer``).

Results go to stdout (a table, or one JSON object with ``--json``); logs go to stderr as JSON
lines. Candles come from ``--data FILE`` (Parquet in the shared layout or CryptoCompare JSON)
or from the lake (``--lake``, optionally ``--start``/``--end`` days).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

DataOpt = Annotated[
    Path | None, typer.Option("--data", help="candle file: .parquet (shared layout) or .json")
]
LakeOpt = Annotated[bool, typer.Option("--lake", help="read DATA_DIR/lake/candles instead")]
SymbolOpt = Annotated[str | None, typer.Option(help="symbol (default: first of SYMBOLS)")]
StartOpt = Annotated[str | None, typer.Option(help="lake: first day, e.g. 2024-01-01")]
EndOpt = Annotated[str | None, typer.Option(help="lake: day after the last")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def register(app: typer.Typer) -> None:
    """Add the trainer's commands to the ``volstream`` app."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("promote")(promote)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Configure logging and keep library chatter (MLflow's run links) off stdout."""
    from services.common.logging import configure_logging
    from services.common.settings import get_settings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    configure_logging(get_settings().log_level, service="trainer")
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _emit(doc: dict[str, Any]) -> None:
    import orjson

    from trainer.evaluate import finite

    sys.stdout.write(orjson.dumps(finite(doc)).decode() + "\n")
    sys.stdout.flush()


def _candles(data: Path | None, lake: bool, symbol: str, start: str | None, end: str | None):
    from services.common.settings import get_settings
    from trainer import sources

    if data is not None:
        return sources.read_candles(data, symbol)
    if lake:
        return sources.read_lake(get_settings().data_dir, symbol, start, end)
    raise typer.BadParameter("give --data FILE or --lake")


def train(
    data: DataOpt = None,
    lake: LakeOpt = False,
    symbol: SymbolOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    no_promote: Annotated[bool, typer.Option("--no-promote", help="register only")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build the dataset, train, register as challenger, run the gate; print the test table."""
    from services.common.settings import get_settings
    from trainer.report import table
    from trainer.train import train_and_register

    settings = get_settings()
    symbol = symbol or settings.symbols[0]
    with _quiet_stdout():
        candles = _candles(data, lake, symbol, start, end)
        out = train_and_register(
            candles, settings, symbol=symbol, promote=not no_promote, source=data
        )
    decision = out["decision"]
    doc = {"version": out["version"], "run_id": out["run_id"], "report": out["report"]}
    doc["decision"] = vars(decision) if decision else None
    if as_json:
        _emit(doc)
        return
    typer.echo(f"registered {settings.model_name} v{out['version']} (run {out['run_id']})")
    typer.echo(table(out["report"]))
    typer.echo(f"gate: {'promoted' if decision and decision.promoted else 'not promoted'}"
               f" - {decision.reason if decision else 'not run (--no-promote)'}")  # fmt: skip


def evaluate(
    data: DataOpt = None,
    lake: LakeOpt = False,
    model: Annotated[str, typer.Option(help="champion, challenger or a version")] = "champion",
    symbol: SymbolOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    as_json: JsonOpt = False,
    walk_forward: Annotated[
        bool,
        typer.Option(
            "--walk-forward", help="retrain before each quarter of --year, test on the quarter"
        ),
    ] = False,
    year: Annotated[int, typer.Option(help="--walk-forward: the year of the four quarters")] = 2024,
) -> None:
    """Score a registered model and its own baselines over the hourly origins of the data, or
    (``--walk-forward``) retrain and test the recipe quarter by quarter."""
    from services.common.settings import get_settings
    from trainer.evaluate import evaluate_candles
    from trainer.report import table

    settings = get_settings()
    if walk_forward:
        _walk_forward(data, lake, symbol or settings.symbols[0], start, end, year, as_json)
        return
    with _quiet_stdout():
        candles = _candles(data, lake, symbol or settings.symbols[0], start, end)
        report = evaluate_candles(candles, model, settings)
    if as_json:
        _emit(report)
    else:
        typer.echo(f"{settings.model_name} v{report['version']} on {report['n']} origins")
        typer.echo(table(report))


def _walk_forward(
    data: Path | None,
    lake: bool,
    symbol: str,
    start: str | None,
    end: str | None,
    year: int,
    as_json: bool,
) -> None:
    from trainer import walkforward
    from trainer.settings import TrainerSettings

    ts = TrainerSettings()
    with _quiet_stdout():
        candles = _candles(data, lake, symbol, start, end)
        reports = walkforward.walk_forward(candles, year, ts, ts.xgb_threads)
    if as_json:
        _emit({"year": year, "quarters": reports})
    else:
        typer.echo(walkforward.table(reports))


def promote(
    force: Annotated[
        bool, typer.Option("--force", help="promote even if the gate refuses")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the promotion gate alone on the current challenger."""
    from services.common.settings import get_settings
    from trainer.gate import promote_current
    from trainer.settings import TrainerSettings

    with _quiet_stdout():
        decision = promote_current(get_settings(), TrainerSettings(), force=force)
    if as_json:
        _emit(vars(decision))
    else:
        verdict = "promoted" if decision.promoted else "refused"
        typer.echo(f"challenger v{decision.challenger} {verdict}: {decision.reason}")
