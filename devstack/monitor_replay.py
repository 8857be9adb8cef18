"""``volstream monitor replay``: the predictor's own monitors over a candle file, offline.

Batch features (the shared feature module), the model's scores and its HAR-seasonal baseline
(the predictor's scoring and :class:`~services.predictor.accuracy.HarSeasonal`), the drift monitor
exactly as the service builds it (:func:`services.predictor.drift.monitor_for` with the bundle's
limits), live accuracy through the same joiner (labels 60 minutes later, from the closes), then
each alert the monitors feed evaluated minute by minute with the threshold table's thresholds
and ``for:`` durations (:mod:`monitoring.alerts`). A month of candles takes seconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from monitoring.alerts import ALERTS_BY_NAME

monitor_app = typer.Typer(help="Run the predictor's monitors offline over candles.")

#: Rows fed before ``--from`` so the windows are full when the counted period starts.
LEAD_MINUTES = 3 * 1440
#: The alert each monitor series feeds, and the threshold key of its condition.
FED_ALERTS = {
    "DataDriftHigh": ("drift_ratio", "ratio"),
    "ModelAccuracyDegraded": ("qlike_ratio", "ratio"),
}


def register(app: typer.Typer) -> None:
    app.add_typer(monitor_app, name="monitor")


@dataclass
class Series:
    """Per scored minute: time, the drift ratio (NaN while not warm) and the champion/baseline
    live QLIKE ratio (NaN while a window is not full enough)."""

    time: np.ndarray
    drift_ratio: np.ndarray
    qlike_ratio: np.ndarray
    test_ratio: np.ndarray  # live / test QLIKE (the old accuracy rule)


def firing(cond: np.ndarray, times: np.ndarray, for_minutes: float) -> np.ndarray:
    """Minute-by-minute alert state as Prometheus evaluates it every minute: firing once the
    condition has held at every evaluation for ``for_minutes`` (a gap of a minute resets it).

    >>> firing(np.array([1, 1, 1, 0, 1, 1, 1, 1], bool), np.arange(8) * 60, 2).astype(int).tolist()
    [0, 0, 1, 0, 0, 0, 1, 1]
    """
    out = np.zeros(len(cond), dtype=bool)
    since = None
    for i, (c, t) in enumerate(zip(cond.tolist(), times.tolist(), strict=True)):
        if not c or (i and t - times[i - 1] > 60):
            since = None
        if c:
            since = t if since is None else since
            out[i] = t - since >= for_minutes * 60
    return out


def episodes(fire: np.ndarray, times: np.ndarray) -> list[dict[str, int]]:
    """Contiguous firing stretches as ``{"start", "end"}`` (unix s; end = last minute + 60)."""
    out: list[dict[str, int]] = []
    for i in np.flatnonzero(fire):
        t = int(times[i])
        if out and out[-1]["end"] == t:
            out[-1]["end"] = t + 60
        else:
            out.append({"start": t, "end": t + 60})
    return out


def monitor_series(
    candles: pd.DataFrame,
    bundle: Any,
    start: int | None = None,
    end: int | None = None,
    limits: Any = None,
    lead_minutes: int = LEAD_MINUTES,
) -> Series:
    """Run the monitors over the candles (rows from ``lead_minutes`` before ``start`` feed the
    windows); returns the per-minute series of ``start <= time < end``. ``limits`` replaces the
    bundle's drift limits (to compare rules)."""
    from services.common.features import FEATURE_VERSION, HORIZON_MINUTES, featurize_many
    from services.predictor.accuracy import BaselineForecast, LiveAccuracy
    from services.predictor.core import score
    from services.predictor.drift import limits_of, monitor_for
    from services.predictor.models import baseline_of
    from services.predictor.settings import PredictorSettings

    if bundle.feature_version != FEATURE_VERSION:
        raise ValueError(
            f"model feature_version {bundle.feature_version} != this code's {FEATURE_VERSION}:"
            " the live predictor would dead-letter every vector"
        )
    ps = PredictorSettings()
    lo = -math.inf if start is None else start - lead_minutes * 60
    hi = math.inf if end is None else end
    c = candles[(candles["time"] >= lo - 8 * 86400) & (candles["time"] < hi + 3600 * 2)]
    feats = featurize_many(c)
    t_all = feats["time"].to_numpy(np.int64)
    rows = feats[feats["warm"].to_numpy(bool) & (t_all >= lo) & (t_all < hi)]
    times = rows["time"].to_numpy(np.int64)
    matrix = rows[bundle.feature_names].to_numpy(np.float64)
    log_rv = score(bundle, matrix)
    limits = limits or limits_of(bundle, ps.psi_window, ps.psi_threshold, ps.psi_min_spans)
    drift = monitor_for(bundle, ps.psi_exclude, limits).update_many(matrix).ratio
    baseline = baseline_of(bundle)
    base = baseline.log_rv(matrix, times) if baseline else np.full(len(times), np.nan)
    acc = LiveAccuracy(HORIZON_MINUTES, ps.accuracy_window, ps.accuracy_min_fill)
    closes = dict(zip(c["time"].tolist(), c["close"].tolist(), strict=True))
    test_qlike = float(getattr(bundle, "metrics", {}).get("test_qlike", math.nan))
    qratio = np.full(len(times), np.nan)
    tratio = np.full(len(times), np.nan)
    symbol = getattr(bundle, "symbol", "BTC")
    for i, t in enumerate(times.tolist()):
        # the close of this minute arrives with its vector, as on ticks.clean
        resolved = acc.joiner.add_closes([(symbol, t, closes[t])])
        fc = [BaselineForecast(symbol, t, float(log_rv[i]), "champion")]
        if math.isfinite(base[i]):
            fc.append(BaselineForecast(symbol, t, float(base[i])))
        resolved += acc.joiner.add_predictions(fc)
        if resolved:
            acc.observe(resolved)
            ready = acc.ready()
            if "champion" in ready:
                tratio[i] = ready["champion"].qlike() / test_qlike
                if "har_seasonal" in ready:
                    qratio[i] = ready["champion"].qlike() / ready["har_seasonal"].qlike()
        elif i:
            qratio[i], tratio[i] = qratio[i - 1], tratio[i - 1]
    keep = (times >= (start if start is not None else -math.inf)) & (times < hi)
    return Series(times[keep], drift[keep], qratio[keep], tratio[keep])


def summarise(series: Series, alerts: Mapping[str, Any] = ALERTS_BY_NAME) -> dict[str, Any]:
    """The replay's JSON: minutes, warm minutes, each fed alert's firing minutes and episodes,
    and the drift ratio's median and p95 over warm minutes."""
    warm = np.isfinite(series.drift_ratio)
    out: dict[str, Any] = {
        "minutes": len(series.time),
        "warm_minutes": int(warm.sum()),
        "alerts": {},
    }
    for name, (attr, key) in FED_ALERTS.items():
        alert = alerts[name]
        values = getattr(series, attr)
        with np.errstate(invalid="ignore"):
            cond = values > alert.thresholds[key]
        fire = firing(cond, series.time, alert.for_minutes)
        out["alerts"][name] = {
            "firing_minutes": int(fire.sum()),
            "episodes": episodes(fire, series.time),
        }
    ratios = series.drift_ratio[warm]
    out["drift_ratio"] = {
        "p50": float(np.quantile(ratios, 0.5)) if len(ratios) else None,
        "p95": float(np.quantile(ratios, 0.95)) if len(ratios) else None,
    }
    return out


def _when(value: str | None) -> int | None:
    return None if value is None else int(pd.Timestamp(value, tz="UTC").timestamp())


@monitor_app.command("replay")
def replay_cmd(
    data: Annotated[Path, typer.Option("--data", help="candles: Parquet or CryptoCompare JSON")],
    model: Annotated[
        str, typer.Option("--model", help="champion, challenger or a version number")
    ] = "champion",
    since: Annotated[
        str | None, typer.Option("--from", help="count minutes from this UTC date/time on")
    ] = None,
    until: Annotated[str | None, typer.Option("--to", help="... up to this one (excluded)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Replay the predictor's monitors over candles and report each alert they feed."""
    from services.common.registry import load_bundle
    from services.common.settings import get_settings
    from trainer.sources import read_candles

    bundle = load_bundle(model, get_settings())
    series = monitor_series(read_candles(data), bundle, _when(since), _when(until))
    result = summarise(series)
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(f"{result['minutes']} minutes, {result['warm_minutes']} warm")
    for name, a in result["alerts"].items():
        typer.echo(f"{name}: firing {a['firing_minutes']} minutes in {len(a['episodes'])} episodes")
    typer.echo(f"drift ratio p50 {result['drift_ratio']['p50']} p95 {result['drift_ratio']['p95']}")
