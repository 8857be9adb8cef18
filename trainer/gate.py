"""The promotion gate, ``volstream gate``: ``challenger`` becomes ``champion`` only when, on a
window of candles that neither model was fitted on, its QLIKE beats the champion's, HAR's and the
seasonal HAR's, each by its margin.

The same code decides for ``volstream train``, the Airflow DAG and the CI workflow. It fails
closed: MLflow unreachable, a version that cannot be loaded (or whose artifact does not match its
hash), a champion that cannot be scored, a window with too few origins, a challenger built on
other features than the code's: each is a :class:`Refusal` with a readable reason. A champion on
another feature version is not comparable; the challenger must then beat the seasonal HAR by the
larger ``GATE_MARGIN_NEW_FEATURES``. Every outcome, errors included, is one ModelEvent
(``promoted`` or ``refused``, with the numbers) and tags on the challenger's version.
``volstream promote --force --why TEXT`` promotes anyway; the event says forced, and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from services.common import registry
from services.common.errors import ModelError
from services.common.registry import ModelBundle
from services.common.schemas import ModelEvent
from services.common.settings import Settings
from trainer import holdout
from trainer.dataset import build_dataset
from trainer.metrics import diebold_mariano, qlike_losses, score
from trainer.report import MODEL
from trainer.settings import TrainerSettings
from trainer.tracking import BASELINES_FILE

log = logging.getLogger(__name__)
EXIT_PROMOTED, EXIT_REFUSED, EXIT_ERROR = 0, 3, 1
CHAMPION = "champion"
#: Run tag: the candle file a version was trained from ("lake" for the lake); the gate's default.
CANDLES_TAG = "data.candles"
#: What the challenger must beat, in the order the report lists them.
OPPONENTS = (CHAMPION, "har", "har_seasonal")

#: Candles before the window that its features (a week) and HAR inputs (168 h) read.
WARMUP_S = 8 * 86400

Candles = Callable[[], pd.DataFrame]


class Refusal(Exception):
    """The gate cannot promote, for a reason a reader can act on (exit 3)."""


class Unreachable(Refusal):
    """MLflow does not answer: refuse at once, without further MLflow calls (each would retry)."""


@dataclass
class Decision:
    """What the gate decided and every number it decided on (JSON-ready via :meth:`doc`)."""

    promoted: bool
    reason: str
    challenger: str | None = None
    champion: str | None = None
    champion_comparable: bool | None = None
    forced: bool = False
    why: str = ""
    window: dict[str, Any] = field(default_factory=dict)
    qlike: dict[str, float] = field(default_factory=dict)
    bars: dict[str, float] = field(default_factory=dict)
    dm_har_seasonal: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_PROMOTED if self.promoted else EXIT_REFUSED

    def doc(self) -> dict[str, Any]:
        return asdict(self)


def decide(qlike: dict[str, float], margins: dict[str, float]) -> tuple[bool, str, dict]:
    """Promote when the challenger (``model``) is below every opponent's QLIKE x (1 - margin).

    Opponents absent from ``qlike`` (no comparable champion) are skipped.

    >>> q = {"model": 0.19, "champion": 0.20, "har": 0.23, "har_seasonal": 0.21}
    >>> m = {"champion": 0.0, "har": 0.0, "har_seasonal": 0.0}
    >>> decide(q, m)[:2]
    (True, 'beats champion (0.19 < 0.2), har (0.19 < 0.23), har_seasonal (0.19 < 0.21)')
    >>> decide(q, m | {"har_seasonal": 0.15})[:2]
    (False, 'does not beat har_seasonal by 15% (0.19 >= 0.1785)')
    """
    bars = {k: qlike[k] * (1.0 - margins[k]) for k in OPPONENTS if k in qlike}
    ours = qlike[MODEL]
    lost = [
        f"{k}{f' by {margins[k]:.0%}' if margins[k] else ''} ({ours:.4g} >= {bar:.4g})"
        for k, bar in bars.items()
        if not ours < bar
    ]
    if lost:
        return False, "does not beat " + "; ".join(lost), bars
    return True, "beats " + ", ".join(f"{k} ({ours:.4g} < {b:.4g})" for k, b in bars.items()), bars


def _load(ref: str, settings: Settings, role: str) -> ModelBundle:
    try:
        return registry.load_bundle(ref, settings)
    except ModelError as exc:
        raise Refusal(f"{role} cannot be loaded: {exc}") from exc


def _window(
    candles: pd.DataFrame, start: int, ts: TrainerSettings, lam: float
) -> tuple[pd.DataFrame, str]:
    """Hourly origins of ``candles`` at or after ``start`` (features warm, targets complete).

    Only the candles the window's features and HAR inputs can read are featurized."""
    candles = candles[candles["time"] >= start - WARMUP_S].reset_index(drop=True)
    if candles.empty:
        return pd.DataFrame({"time": []}), ""
    ds = build_dataset(candles, ts, lambdas=[lam], split=False)
    frame = ds.frame[ds.frame["time"] >= start].reset_index(drop=True)
    return frame, ds.feature_version


def _predict(bundle: ModelBundle, frame: pd.DataFrame) -> np.ndarray:
    missing = [n for n in bundle.feature_names if n not in frame.columns]
    if missing:
        raise Refusal(f"v{bundle.version} needs features the code lacks: {missing[:5]}")
    return bundle.predict_log_rv(frame[bundle.feature_names].to_numpy(dtype=np.float64))


def evaluate(
    settings: Settings, ts: TrainerSettings, candles: Candles, champion_settings: Settings
) -> Decision:
    """Score challenger, champion and the baselines on the shared window; decide (no side
    effects). Raises :class:`Refusal` when the gate cannot judge."""
    from trainer.train import score_frame

    try:
        registry.ping(settings)
    except ModelError as exc:
        raise Unreachable(str(exc)) from exc
    challenger_v = registry.alias_version(registry.CHALLENGER, settings)
    if challenger_v is None:
        raise Refusal(f"{settings.model_name} has no challenger")
    d = Decision(False, "", challenger=challenger_v)
    d.champion = registry.alias_version(registry.CHAMPION, champion_settings)
    if d.champion == challenger_v and champion_settings.model_name == settings.model_name:
        raise Refusal(f"challenger v{challenger_v} is already the champion")
    challenger = _load(challenger_v, settings, f"challenger v{challenger_v}")
    champion = None
    if d.champion is not None:
        champion = _load(d.champion, champion_settings, f"champion v{d.champion}")
        d.champion_comparable = champion.feature_version == challenger.feature_version
    try:
        baselines = registry.read_run_json(challenger.run_id, BASELINES_FILE, settings)
    except ModelError as exc:
        raise Refusal(f"challenger v{challenger_v} has no baselines: {exc}") from exc
    until = [challenger.trained_until]
    if d.champion_comparable:
        until.append(champion.trained_until)  # type: ignore[union-attr]
    if min(until) <= 0:
        raise Refusal("a version does not record the end of its training data (data.trained_until)")
    start = holdout.window_start(*until)
    frame, feature_version = _window(candles(), start, ts, baselines["ewma"]["lambda"])
    if feature_version and challenger.feature_version != feature_version:
        raise Refusal(
            f"challenger v{challenger_v} uses features {challenger.feature_version}, "
            f"the feature code is {feature_version}"
        )
    n = len(frame)
    d.window = {"start": start, "end": int(frame["time"].max()) + 3600 if n else start, "n": n}
    if n < ts.gate_min_origins:
        raise Refusal(
            f"window too short: {n} hourly origins after both models' training data "
            f"(from {_iso(start)}; need {ts.gate_min_origins})"
        )
    report, _ = score_frame(frame, _predict(challenger, frame), challenger.bias_factor, baselines)
    d.qlike = {MODEL: report[MODEL]["qlike"], "har": report["har"]["qlike"]}
    d.qlike["har_seasonal"] = report["har_seasonal"]["qlike"]
    if d.champion_comparable:
        y, champ_pred = frame["y"].to_numpy(), _predict(champion, frame)  # type: ignore[arg-type]
        report[CHAMPION] = score(y, champ_pred, champion.bias_factor)  # type: ignore[union-attr]
        report["dm"][CHAMPION] = diebold_mariano(
            qlike_losses(y, _predict(challenger, frame), challenger.bias_factor),
            qlike_losses(y, champ_pred, champion.bias_factor),  # type: ignore[union-attr]
        )
        d.qlike[CHAMPION] = report[CHAMPION]["qlike"]
    d.report, d.dm_har_seasonal = report, report["dm"]["har_seasonal"]
    margins = {
        CHAMPION: ts.gate_margin_champion,
        "har": ts.gate_margin_har,
        "har_seasonal": ts.gate_margin_har_seasonal,
    }
    if d.champion_comparable is False:
        margins["har_seasonal"] = max(ts.gate_margin_new_features, ts.gate_margin_har_seasonal)
    d.promoted, d.reason, d.bars = decide(d.qlike, margins)
    if d.champion_comparable is False:
        d.reason += (
            f"; champion v{d.champion} not comparable (features {champion.feature_version}"  # type: ignore[union-attr]
            f", challenger {challenger.feature_version}): new features must beat har_seasonal "
            f"by {margins['har_seasonal']:.0%}"
        )
    return d


def _iso(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(t))


def _metrics(d: Decision) -> dict[str, float]:
    out = {f"{'challenger' if k == MODEL else k}_qlike": v for k, v in d.qlike.items()}
    if d.dm_har_seasonal:
        out["dm_har_seasonal_stat"] = float(d.dm_har_seasonal["stat"])
    out |= {f"window_{k}": float(v) for k, v in d.window.items()}
    return {k: v for k, v in out.items() if np.isfinite(v)}


def record(d: Decision, settings: Settings) -> None:
    """Tags on the challenger's version (durable), then the one ModelEvent (best effort)."""
    tags = {
        "gate.decision": "promoted" if d.promoted else "refused",
        "gate.reason": d.reason[:4000],
        "gate.time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "gate.champion_before": d.champion or "",
        "gate.forced": str(d.forced).lower(),
    } | {f"gate.{k}": str(v) for k, v in _metrics(d).items()}
    if d.why:
        tags["gate.why"] = d.why
    run_id = None
    if d.challenger is not None:
        try:
            registry.tag_version(d.challenger, tags, settings)
            run_id = registry.version_run(d.challenger, settings)[1]
        except Exception as exc:  # MLflow down: the event below still says what happened
            log.warning("gate tags not written", extra={"error": repr(exc)})
    event = ModelEvent(
        event="promoted" if d.promoted else "refused",
        model_name=settings.model_name,
        version=d.challenger,
        alias=registry.CHAMPION if d.promoted else registry.CHALLENGER,
        run_id=run_id,
        reason=(f"forced: {d.why}; gate: " if d.forced else "") + d.reason,
        metrics=_metrics(d),
        forced=d.forced,
    )
    registry.publish_event(event, settings)


def run(
    settings: Settings,
    ts: TrainerSettings,
    candles: Candles,
    force: bool = False,
    why: str = "",
) -> Decision:
    """``volstream gate`` (and ``promote --force``): evaluate, move the alias if allowed,
    record the outcome once. Unexpected errors are recorded as a refusal, then re-raised."""
    log.info("gate started", extra={"model": settings.model_name, "forced": force})
    champion_settings = settings
    if ts.gate_champion_model:
        champion_settings = settings.model_copy(update={"model_name": ts.gate_champion_model})
    try:
        d = evaluate(settings, ts, candles, champion_settings)
    except (Refusal, ModelError, MlflowException, OSError, ValueError) as exc:
        reason = str(exc) if isinstance(exc, Refusal) else f"{type(exc).__name__}: {exc}"
        d = Decision(False, reason)
        if not isinstance(exc, Unreachable):
            d.challenger = _quiet(lambda: registry.alias_version(registry.CHALLENGER, settings))
    except Exception as exc:
        d = Decision(False, f"gate error: {type(exc).__name__}: {exc}")
        d.challenger = _quiet(lambda: registry.alias_version(registry.CHALLENGER, settings))
        log.exception("gate error; nothing promoted")
        record(d, settings)
        raise
    if force and not d.promoted:
        if d.challenger is None:
            raise Refusal(f"nothing to force: {d.reason}")
        d.forced, d.why, d.promoted = True, why, True
    if d.promoted:
        registry.set_alias(registry.CHAMPION, str(d.challenger), settings)
    log.info("gate decision", extra={k: v for k, v in d.doc().items() if k != "report"})
    record(d, settings)
    return d


def announce_challenger(
    settings: Settings, version: str, run_id: str, report: dict[str, Any]
) -> None:
    """After training: the new version becomes ``challenger`` (``registered`` event)."""
    registry.set_alias(registry.CHALLENGER, version, settings)
    event = ModelEvent(
        event="registered",
        model_name=settings.model_name,
        version=version,
        alias=registry.CHALLENGER,
        run_id=run_id,
        metrics={"qlike": report[MODEL]["qlike"]},
    )
    registry.publish_event(event, settings)


def _quiet(fn: Callable[[], str | None]) -> str | None:
    """A lookup that may fail when MLflow is down (None then)."""
    try:
        return fn()
    except Exception:
        return None
