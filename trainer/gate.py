"""The promotion gate: ``challenger`` becomes ``champion`` only if, on the same test window, its
QLIKE beats both the current champion's and HAR's by the configured margins.

A champion built on another feature version cannot be scored on today's features (nor served by
today's featurizer), so it does not block: the challenger then only has to beat HAR. Every
decision is written as a ModelEvent to ``model.events`` (best effort) and as tags on the model
version and its run (durable), so "which version served when" is auditable.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from services.common import registry
from services.common.errors import ModelError
from services.common.schemas import ModelEvent
from services.common.settings import Settings
from trainer.dataset import Dataset
from trainer.metrics import qlike_losses
from trainer.report import MODEL
from trainer.settings import TrainerSettings

log = logging.getLogger(__name__)
CHAMPION_TAG = "gate.champion_version"
CHAMPION_METRIC = "gate_champion_qlike"


@dataclass(frozen=True)
class Decision:
    """What the gate decided, and the numbers it decided on."""

    promoted: bool
    reason: str
    challenger: str
    champion: str | None
    challenger_qlike: float
    har_qlike: float
    champion_qlike: float | None


def decide(
    challenger_qlike: float,
    har_qlike: float,
    champion_qlike: float | None,
    margin_champion: float = 0.0,
    margin_har: float = 0.0,
) -> tuple[bool, str]:
    """Promote when the challenger beats HAR and the champion (if any) by their margins.

    >>> decide(0.20, 0.25, 0.22)
    (True, 'beats har (0.2 < 0.25) and champion (0.2 < 0.22)')
    >>> decide(0.20, 0.25, 0.19)[0], decide(0.20, 0.21, None, margin_har=0.1)[0]
    (False, False)
    >>> decide(0.20, 0.25, None)[1]
    'beats har (0.2 < 0.25); no comparable champion'
    """
    har_bar = har_qlike * (1.0 - margin_har)
    if not challenger_qlike < har_bar:
        return False, f"does not beat har ({challenger_qlike:.4g} >= {har_bar:.4g})"
    why = f"beats har ({challenger_qlike:.4g} < {har_bar:.4g})"
    if champion_qlike is None:
        return True, why + "; no comparable champion"
    champ_bar = champion_qlike * (1.0 - margin_champion)
    if not challenger_qlike < champ_bar:
        return False, f"does not beat champion ({challenger_qlike:.4g} >= {champ_bar:.4g})"
    return True, why + f" and champion ({challenger_qlike:.4g} < {champ_bar:.4g})"


def champion_score(ds: Dataset, settings: Settings) -> dict[str, Any] | None:
    """The current champion's QLIKE on this dataset's test split, or None (no champion, or one
    trained on another feature version)."""
    try:
        bundle = registry.load_bundle(registry.CHAMPION, settings)
    except ModelError:
        return None
    if bundle.feature_version != ds.feature_version:
        log.warning(
            "champion built on other features; not comparable",
            extra={"champion": bundle.version, "feature_version": bundle.feature_version},
        )
        return None
    test = ds.part("test")
    yhat = bundle.predict_log_rv(test[bundle.feature_names].to_numpy(dtype=np.float64))
    qlike = float(np.mean(qlike_losses(test["y"].to_numpy(), yhat, bundle.bias_factor)))
    return {"version": bundle.version, "qlike": qlike}


def _record(decision: Decision, run_id: str, settings: Settings) -> None:
    """Tags on the version and its run, then the ModelEvent (best effort)."""
    tags = {
        "gate.decision": "promoted" if decision.promoted else "refused",
        "gate.reason": decision.reason,
        "gate.time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "gate.champion_before": decision.champion or "",
    }
    registry.tag_version(decision.challenger, tags, settings)
    client = registry.client(settings)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    metrics = {"challenger_qlike": decision.challenger_qlike, "har_qlike": decision.har_qlike}
    if decision.champion_qlike is not None:
        metrics["champion_qlike"] = decision.champion_qlike
    event = ModelEvent(
        event="promoted" if decision.promoted else "refused",
        model_name=settings.model_name,
        version=decision.challenger,
        alias=registry.CHAMPION if decision.promoted else registry.CHALLENGER,
        run_id=run_id,
        reason=decision.reason,
        metrics=metrics,
    )
    registry.publish_event(event, settings)


def apply(
    settings: Settings,
    ts: TrainerSettings,
    challenger: str,
    run_id: str,
    scores: dict[str, Any],
    force: bool = False,
) -> Decision:
    """Decide on ``scores`` (challenger, har, champion QLIKE), move the alias, record it."""
    promoted, reason = decide(
        scores["challenger_qlike"],
        scores["har_qlike"],
        scores.get("champion_qlike"),
        ts.gate_margin_champion,
        ts.gate_margin_har,
    )
    if force and not promoted:
        promoted, reason = True, f"forced ({reason})"
    decision = Decision(
        promoted, reason, challenger, scores.get("champion"), scores["challenger_qlike"],
        scores["har_qlike"], scores.get("champion_qlike"),
    )  # fmt: skip
    if promoted:
        registry.set_alias(registry.CHAMPION, challenger, settings)
    log.info("gate decision", extra=asdict(decision))
    _record(decision, run_id, settings)
    return decision


def run_gate(
    settings: Settings,
    ts: TrainerSettings,
    version: str,
    run_id: str,
    report: dict[str, Any],
    champion: dict[str, Any] | None,
    promote: bool = True,
) -> Decision | None:
    """After training: ``version`` becomes challenger, then the gate runs (unless told not to)."""
    registry.set_alias(registry.CHALLENGER, version, settings)
    registry.publish_event(
        ModelEvent(
            event="registered", model_name=settings.model_name, version=version,
            alias=registry.CHALLENGER, run_id=run_id, metrics={"qlike": report[MODEL]["qlike"]},
        ),
        settings,
    )  # fmt: skip
    scores = {"challenger_qlike": report[MODEL]["qlike"], "har_qlike": report["har"]["qlike"]}
    if champion is not None:
        # recorded even without promoting, so a later `volstream promote` (Airflow's
        # evaluate_and_promote) compares on this same test window
        scores |= {"champion": champion["version"], "champion_qlike": champion["qlike"]}
        client = registry.client(settings)
        client.set_tag(run_id, CHAMPION_TAG, champion["version"])
        client.log_metric(run_id, CHAMPION_METRIC, champion["qlike"])
    if not promote:
        return None
    return apply(settings, ts, version, run_id, scores)


def stored_scores(run_id: str, champion: str | None, settings: Settings) -> dict[str, Any]:
    """The gate's numbers as recorded by the challenger's training run (same test window).

    Its champion score is only valid for the champion it was measured against.
    """
    run = registry.client(settings).get_run(run_id)
    metrics, tags = run.data.metrics, run.data.tags
    scores = {"challenger_qlike": metrics["test_qlike"], "har_qlike": metrics["test_har_qlike"]}
    if champion is None:
        return scores
    if tags.get(CHAMPION_TAG) != champion or CHAMPION_METRIC not in metrics:
        raise ModelError(
            f"champion v{champion} was not scored on the challenger's test window; retrain"
        )
    return scores | {"champion": champion, "champion_qlike": metrics[CHAMPION_METRIC]}


def promote_current(settings: Settings, ts: TrainerSettings, force: bool = False) -> Decision:
    """``volstream promote``: run the gate alone on the current challenger."""
    version, run_id = registry.version_run(registry.CHALLENGER, settings)
    champion = registry.alias_version(registry.CHAMPION, settings)
    if champion == version:
        raise ModelError(f"challenger v{version} is already the champion")
    try:
        scores = stored_scores(run_id, champion, settings)
    except ModelError:
        if not force:
            raise
        scores = stored_scores(run_id, None, settings) | {"champion": champion}
    return apply(settings, ts, version, run_id, scores, force=force)
