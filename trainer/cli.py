"""``volstream train | gate | promote | evaluate`` (also ``python -m trainer``).

Results go to stdout (a table, or one JSON object with ``--json``); logs go to stderr as JSON
lines. Candles come from ``--data FILE`` (Parquet in the shared layout or CryptoCompare JSON)
or from the lake (``--lake``, optionally ``--start``/``--end`` days); ``gate`` defaults to the
candles the challenger was trained from.

Exit codes of ``gate``, ``train`` (when it gates) and ``promote``: 0 promoted, 3 refused, any
other non-zero value an error (nothing promoted either way).
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
    app.command("gate")(gate)
    app.command("promote")(promote)
    app.command("evaluate")(evaluate)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Configure logging and keep library chatter (MLflow's run links) off stdout."""
    from services.common.logging import configure_logging
    from services.common.settings import get_settings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow's client retries a dead server for minutes; the gate must answer within a minute
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
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
    """Build the dataset, train, register as challenger, run the gate; print the test table.

    Exits like ``volstream gate`` (0 promoted, 3 refused); 0 with ``--no-promote``.
    """
    from services.common.errors import ConfigError
    from services.common.settings import get_settings
    from trainer.report import table
    from trainer.train import train_and_register

    settings = get_settings()
    symbol = symbol or settings.symbols[0]
    try:
        with _quiet_stdout():
            candles = _candles(data, lake, symbol, start, end)
            out = train_and_register(
                candles, settings, symbol=symbol, promote=not no_promote, source=data
            )
    except ConfigError as exc:
        typer.echo(f"train: {exc}", err=True)
        raise typer.Exit(2) from exc
    decision = out["decision"]
    doc = {"version": out["version"], "run_id": out["run_id"], "report": out["report"]}
    doc["decision"] = decision.doc() if decision else None
    if as_json:
        _emit(doc)
    else:
        typer.echo(f"registered {settings.model_name} v{out['version']} (run {out['run_id']})")
        typer.echo(table(out["report"]))
        if decision is None:
            typer.echo("gate: not run (--no-promote)")
        else:
            _echo_decision(decision)
    if decision is not None:
        raise typer.Exit(decision.exit_code)


def _gate_candles(data: Path | None, lake: bool, symbol: str | None, start, end):
    """The gate's candle loader: the options, else what the challenger was trained from."""
    from services.common import registry
    from services.common.settings import get_settings
    from trainer import sources
    from trainer.gate import CANDLES_TAG

    def load():
        settings = get_settings()
        sym = symbol or settings.symbols[0]
        if data is not None or lake:
            return _candles(data, lake, sym, start, end)
        _, run_id = registry.version_run(registry.CHALLENGER, settings)
        source = registry.client(settings).get_run(run_id).data.tags.get(CANDLES_TAG, "lake")
        if source == "lake":
            return sources.read_lake(settings.data_dir, sym, start, end)
        return sources.read_candles(Path(source), sym)

    return load


def _echo_decision(decision) -> None:
    from trainer.report import table

    if decision.report:
        typer.echo(table(decision.report))
    verdict = "promoted" if decision.promoted else "refused"
    forced = f" (FORCED: {decision.why})" if decision.forced else ""
    typer.echo(f"gate: challenger v{decision.challenger} {verdict}{forced}: {decision.reason}")


def _run_gate(candles, as_json: bool, force: bool = False, why: str = "") -> None:
    from services.common.settings import get_settings
    from trainer import gate as gate_mod
    from trainer.settings import TrainerSettings

    with _quiet_stdout():
        decision = gate_mod.run(get_settings(), TrainerSettings(), candles, force, why)
    if as_json:
        _emit(decision.doc())
    else:
        _echo_decision(decision)
    if not decision.promoted:
        typer.echo(f"refused: {decision.reason}", err=True)
    raise typer.Exit(decision.exit_code)


def gate(
    data: DataOpt = None,
    lake: LakeOpt = False,
    symbol: SymbolOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The promotion gate on the current challenger: exit 0 promoted, 3 refused.

    Challenger and champion are scored on the candles after both models' training data
    (default: the challenger's own training candles, holdout included).
    """
    _run_gate(_gate_candles(data, lake, symbol, start, end), as_json)


def promote(
    force: Annotated[
        bool, typer.Option("--force", help="promote even if the gate refuses (needs --why)")
    ] = False,
    why: Annotated[str, typer.Option("--why", help="why the gate is overridden")] = "",
    data: DataOpt = None,
    lake: LakeOpt = False,
    symbol: SymbolOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """``volstream gate`` on the current challenger; with ``--force --why TEXT`` it is promoted
    even when refused, and the event records that it was forced and why."""
    if force and not why.strip():
        raise typer.BadParameter("--force needs --why TEXT (it is recorded with the promotion)")
    _run_gate(_gate_candles(data, lake, symbol, None, None), as_json, force, why.strip())


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
    quarters: Annotated[
        str, typer.Option(help="--walk-forward: which quarters, e.g. 4 or 1,4 (default all)")
    ] = "1,2,3,4",
) -> None:
    """Score a registered model and its own baselines over the hourly origins of the data, or
    (``--walk-forward``) retrain and test the recipe quarter by quarter."""
    from services.common.settings import get_settings
    from trainer.evaluate import evaluate_candles
    from trainer.report import table

    settings = get_settings()
    if walk_forward:
        which = _quarter_numbers(quarters)
        _walk_forward(data, lake, symbol or settings.symbols[0], start, end, year, which, as_json)
        return
    with _quiet_stdout():
        candles = _candles(data, lake, symbol or settings.symbols[0], start, end)
        report = evaluate_candles(candles, model, settings)
    if as_json:
        _emit(report)
    else:
        typer.echo(f"{settings.model_name} v{report['version']} on {report['n']} origins")
        typer.echo(table(report))


def _quarter_numbers(text: str) -> tuple[int, ...]:
    """``"1,4"`` -> ``(1, 4)``; anything but quarters 1..4 is a usage error."""
    try:
        which = tuple(sorted({int(q) for q in text.split(",") if q.strip()}))
    except ValueError:
        which = ()
    if not which or not set(which) <= {1, 2, 3, 4}:
        raise typer.BadParameter(f"--quarters takes numbers 1..4 separated by commas, not {text!r}")
    return which


def _walk_forward(
    data: Path | None,
    lake: bool,
    symbol: str,
    start: str | None,
    end: str | None,
    year: int,
    which: tuple[int, ...],
    as_json: bool,
) -> None:
    from trainer import walkforward
    from trainer.settings import TrainerSettings

    ts = TrainerSettings()
    with _quiet_stdout():
        candles = _candles(data, lake, symbol, start, end)
        reports = walkforward.walk_forward(candles, year, ts, ts.xgb_threads, which)
    if as_json:
        _emit({"year": year, "quarters": reports})
    else:
        typer.echo(walkforward.table(reports))
