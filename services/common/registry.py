"""The MLflow adapter: where models are registered, found by alias, and loaded as bundles.

One registered model (``settings.model_name``, default ``volstream-rv60``) with two aliases,
``champion`` (serves) and ``challenger`` (the last trained, shadow-scored). A version is the XGBoost
booster (MLflow's ``xgboost`` flavour, with signature and input example) plus ``bundle.json``, a run
artifact with everything needed to use it: feature names and version, the variance bias factor,
the training reference distribution (PSI/OOD) and the test metrics. Everything MLflow-specific
stays in this module; the predictor and the trainer see :class:`ModelBundle` and plain calls.

A :class:`~services.common.errors.ModelError` means no such model, alias or version.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.common.errors import ModelError
from services.common.schemas import ModelEvent
from services.common.settings import Settings
from services.common.topics import MODEL_EVENTS, TOPICS

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)
MODEL_ARTIFACT = "model"
BUNDLE_DIR = "bundle"
BUNDLE_FILE = "bundle.json"


@dataclass(frozen=True)
class ModelBundle:
    """A registered model version, ready to score: ``log_rv = booster(features)``.

    ``predict_log_rv`` takes rows ordered by ``feature_names`` (NaN for undefined); the variance
    forecast is ``exp(2 * log_rv) * bias_factor`` (the factor was fitted on validation).
    """

    booster: Any  # xgboost.Booster (kept untyped so importing this module stays light)
    name: str
    version: str
    run_id: str
    feature_names: list[str]
    feature_version: str
    bias_factor: float
    reference: dict[str, list[float]]
    feature_ranges: dict[str, tuple[float, float]]
    metrics: dict[str, float]
    trained_at: float
    symbol: str = "BTC"
    horizon_minutes: int = 60
    extra: dict[str, Any] = field(default_factory=dict)
    intervals: dict[str, Any] = field(default_factory=dict)
    """Interval calibration (:mod:`services.common.intervals`); empty: no intervals."""
    drift_limits: dict[str, Any] = field(default_factory=dict)
    """Per-feature PSI windows and limits calibrated on the training reference
    (``services.common.drift.DriftLimits.to_json``); empty for older models."""
    har_seasonal: dict[str, Any] = field(default_factory=dict)
    """The HAR-seasonal baseline as trained (coefficients, bias factor, feature inputs): the
    predictor scores it live next to the model (``services.predictor.accuracy.HarSeasonal``)."""

    def predict_log_rv(self, rows: np.ndarray) -> np.ndarray:
        """Predicted log RV for a 2-D float array of rows (one call per micro-batch)."""
        return np.asarray(self.booster.inplace_predict(np.asarray(rows, dtype=np.float64)))

    def variance(self, log_rv: np.ndarray) -> np.ndarray:
        """Variance forecast of the horizon from predicted log RV, bias-corrected."""
        return np.exp(2.0 * np.asarray(log_rv)) * self.bias_factor


def experiment_name(symbol: str, horizon_minutes: int = 60) -> str:
    """One MLflow experiment per symbol and horizon.

    >>> experiment_name("BTC")
    'volstream/BTC/rv60'
    """
    return f"volstream/{symbol}/rv{horizon_minutes}"


def client(settings: Settings) -> Any:
    """An MLflow client on the configured tracking and registry server."""
    from mlflow import MlflowClient

    uri = settings.mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _use_server(settings: Settings) -> None:
    """Point MLflow's fluent API at the configured server (the flavours only use that)."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)


def _get_version(ref: str, settings: Settings) -> Any:
    """The ModelVersion behind an alias or a version number; ModelError when absent."""
    from mlflow.exceptions import MlflowException

    name, c = settings.model_name, client(settings)
    try:
        if ref.isdigit():
            return c.get_model_version(name, ref)
        return c.get_model_version_by_alias(name, ref)
    except MlflowException as exc:
        raise ModelError(f"no model {name}@{ref}: {exc.message}") from exc


def version_run(ref: str, settings: Settings) -> tuple[str, str]:
    """(version, run id) behind an alias or version number; ModelError when absent."""
    mv = _get_version(str(ref), settings)
    return str(mv.version), str(mv.run_id)


def alias_version(alias: str, settings: Settings) -> str | None:
    """The version an alias points to, or None when unset (or no model is registered yet)."""
    try:
        return str(_get_version(alias, settings).version)
    except ModelError:
        return None


def read_run_json(run_id: str, filename: str, settings: Settings) -> dict[str, Any]:
    """A JSON artifact of a run under ``bundle/`` (``bundle.json``, ``baselines.json``)."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client(settings).download_artifacts(run_id, f"{BUNDLE_DIR}/{filename}", tmp)
        except (MlflowException, OSError) as exc:
            raise ModelError(f"run {run_id} has no {BUNDLE_DIR}/{filename}: {exc}") from exc
        return dict(json.loads(Path(path).read_text()))


def load_bundle(ref: str, settings: Settings) -> ModelBundle:
    """Load ``champion``, ``challenger`` or a version number as a ready-to-score bundle."""
    import mlflow.xgboost

    mv = _get_version(str(ref), settings)
    meta = read_run_json(mv.run_id, BUNDLE_FILE, settings)
    _use_server(settings)
    try:
        booster = mlflow.xgboost.load_model(f"models:/{settings.model_name}/{mv.version}")
    except Exception as exc:  # MLflow raises several types for missing or broken artifacts
        raise ModelError(f"cannot load {settings.model_name} v{mv.version}: {exc}") from exc
    booster.set_param({"nthread": 1})
    return bundle_from_meta(meta, booster, settings.model_name, str(mv.version), mv.run_id)


def bundle_from_meta(
    meta: dict[str, Any], booster: Any, name: str, version: str, run_id: str
) -> ModelBundle:
    """Rebuild a bundle from its ``bundle.json`` document (see :func:`bundle_meta`)."""
    return ModelBundle(
        booster=booster,
        name=name,
        version=version,
        run_id=run_id,
        feature_names=list(meta["feature_names"]),
        feature_version=str(meta["feature_version"]),
        bias_factor=float(meta["bias_factor"]),
        reference={k: [float(x) for x in v] for k, v in meta["reference"].items()},
        feature_ranges={k: (float(v[0]), float(v[1])) for k, v in meta["feature_ranges"].items()},
        metrics={k: float(v) for k, v in meta["metrics"].items()},
        trained_at=float(meta["trained_at"]),
        symbol=str(meta.get("symbol", "BTC")),
        horizon_minutes=int(meta.get("horizon_minutes", 60)),
        extra=dict(meta.get("extra", {})),
        intervals=dict(meta.get("intervals", {})),
        drift_limits=dict(meta.get("drift_limits", {})),
        har_seasonal=dict(meta.get("har_seasonal", {})),
    )


def bundle_meta(bundle: ModelBundle) -> dict[str, Any]:
    """The JSON document stored as ``bundle/bundle.json`` (everything but the booster).

    >>> b = ModelBundle(None, "m", "1", "r", ["a"], "fs-1", 1.25, {"a": [0.0, 1.0]},
    ...                 {"a": (0.0, 1.0)}, {"test_qlike": 0.2}, 1.0)
    >>> bundle_from_meta(bundle_meta(b), None, "m", "1", "r") == b
    True
    """
    return {
        "feature_names": bundle.feature_names,
        "feature_version": bundle.feature_version,
        "bias_factor": bundle.bias_factor,
        "reference": bundle.reference,
        "feature_ranges": {k: list(v) for k, v in bundle.feature_ranges.items()},
        "metrics": bundle.metrics,
        "trained_at": bundle.trained_at,
        "symbol": bundle.symbol,
        "horizon_minutes": bundle.horizon_minutes,
        "extra": bundle.extra,
        "intervals": bundle.intervals,
        "drift_limits": bundle.drift_limits,
        "har_seasonal": bundle.har_seasonal,
    }


def log_bundle(
    bundle: ModelBundle, input_example: Any, settings: Settings, files: dict[str, Any] | None = None
) -> str:
    """Log the booster and its bundle into the *active* run, register it; returns the version.

    ``input_example`` (a DataFrame of feature rows) gives the model its signature. ``files`` are
    extra JSON documents written next to ``bundle.json`` (e.g. the baselines' parameters).
    """
    import mlflow
    import mlflow.xgboost
    from mlflow.models import infer_signature

    _use_server(settings)
    docs = {BUNDLE_FILE: bundle_meta(bundle), **(files or {})}
    for filename, doc in docs.items():
        mlflow.log_dict(doc, f"{BUNDLE_DIR}/{filename}")
    prediction = bundle.booster.inplace_predict(np.asarray(input_example, dtype=np.float64))
    info = mlflow.xgboost.log_model(
        bundle.booster,
        name=MODEL_ARTIFACT,
        signature=infer_signature(input_example, prediction),
        input_example=input_example,
        registered_model_name=settings.model_name,
        pip_requirements=_requirements(),
    )
    version = str(info.registered_model_version)
    log.info("model registered", extra={"model": settings.model_name, "version": version})
    return version


def _requirements() -> list[str]:
    """Pinned serving requirements (explicit, so MLflow skips its slow environment inference)."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("xgboost-cpu", "numpy", "pandas")]


def set_alias(alias: str, version: str, settings: Settings) -> None:
    """Point ``alias`` at ``version`` of the registered model."""
    client(settings).set_registered_model_alias(settings.model_name, alias, str(version))


def tag_version(version: str, tags: dict[str, str], settings: Settings) -> None:
    """Set tags on a model version (gate decisions, so 'which version served when' is auditable)."""
    c = client(settings)
    for key, value in tags.items():
        c.set_model_version_tag(settings.model_name, str(version), key, value)


async def publish_event_async(event: ModelEvent, settings: Settings) -> None:
    from services.common import kafka

    spec = next(t for t in TOPICS if t.name == MODEL_EVENTS)
    await kafka.ensure_topics(settings, specs=[spec])
    producer = kafka.make_producer(settings)
    await producer.start()
    try:
        await kafka.send_batch(
            producer, MODEL_EVENTS, [(event.model_name.encode(), event.to_bytes())]
        )
    finally:
        await producer.stop()


def publish_event(event: ModelEvent, settings: Settings, timeout_s: float = 10.0) -> bool:
    """Send a ModelEvent to ``model.events``; without a reachable broker, warn and return False.

    Training and promotion must work without a broker: the MLflow tag is the durable record.
    """

    async def bounded() -> None:
        await asyncio.wait_for(publish_event_async(event, settings), timeout_s)

    try:
        asyncio.run(bounded())
    except Exception as exc:  # any broker failure: the event is best-effort
        log.warning(
            "model event not published (no broker?)",
            extra={"topic": MODEL_EVENTS, "event": event.event, "error": repr(exc)},
        )
        return False
    log.info("model event published", extra={"topic": MODEL_EVENTS, "event": event.event})
    return True
