"""The MLflow adapter: where models are registered, found by alias, and loaded as bundles.

One registered model (``settings.model_name``, default ``volstream-rv60``) with two aliases,
``champion`` (serves) and ``challenger`` (the last trained, shadow-scored). A version is a run's
``bundle/`` folder: ``booster.ubj`` (XGBoost's own UBJSON model format) and ``bundle.json``
(feature names and version, the variance bias factor, the training reference distribution for
PSI/OOD, the test metrics and the end of the data it was fitted on). Everything MLflow-specific
stays in this module; the predictor and the trainer see :class:`ModelBundle` and plain calls.

**Models are loaded as data.** No MLflow flavour is used: registration stores the booster's bytes
and their SHA-256 in the version's tags (``model.sha256``); loading downloads those bytes, checks
the hash and hands them to ``xgboost.Booster.load_model``. Nothing named by a version (an
``MLmodel`` file, a loader module, pip requirements) is ever imported or installed, so whoever can
register a version or move an alias cannot run code in the predictor or the trainer.

A :class:`~services.common.errors.ModelError` means no such model, alias or version; its
subclass :class:`~services.common.errors.ModelIntegrityError` a version whose artifact is not a
volstream booster or does not match its hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.common.errors import ModelError, ModelIntegrityError
from services.common.schemas import ModelEvent
from services.common.settings import Settings
from services.common.topics import MODEL_EVENTS, TOPICS

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)
#: MLflow error codes that mean "no such model or alias" (anything else is a failure).
ABSENT = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")
BUNDLE_DIR = "bundle"
BUNDLE_FILE = "bundle.json"
BOOSTER_FILE = "booster.ubj"
BOOSTER_FORMAT = "xgboost-ubj"
#: Version tags written at registration: the booster's format and SHA-256, and the end of the
#: data the model was fitted (and early-stopped) on, as unix seconds.
FORMAT_TAG, SHA256_TAG, TRAINED_UNTIL_TAG = "model.format", "model.sha256", "data.trained_until"


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
    trained_until: int = 0
    """Unix seconds: the last candle any fitting or early-stopping row read (0: unknown)."""

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
    """The version behind an alias or a version number (``.version``, ``.run_id``, ``.tags``);
    ModelError when absent or unreadable."""
    name = settings.model_name
    if _rest(settings):
        try:
            return _rest_version(ref, settings)
        except _ApiError as exc:
            raise ModelError(f"no model {name}@{ref}: {exc.message}") from exc
    from mlflow.exceptions import MlflowException

    c = client(settings)
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
    """The version an alias points to, or None when unset (or no model is registered yet).

    Any other failure (MLflow unreachable, a server error) raises ModelError: "cannot tell" must
    never read as "no champion".
    """
    name = settings.model_name
    if _rest(settings):
        try:
            return str(_rest_version(alias, settings).version)
        except _ApiError as exc:
            if exc.code in ABSENT:
                return None
            raise ModelError(f"cannot read {name}@{alias}: {exc.message}") from exc
    from mlflow.exceptions import MlflowException

    try:
        return str(client(settings).get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ABSENT:
            return None
        raise ModelError(f"cannot read {name}@{alias}: {exc.message}") from exc


# -- The read path over MLflow's REST API ---------------------------------------------------------
# What the predictor needs of MLflow is three reads: the version behind an alias, the version's
# tags and run, and two small artifacts of that run. ``import mlflow`` (any ``mlflow.*`` module
# runs the package's ``__init__``) loads pandas, pyarrow, scipy, SQLAlchemy, FastAPI's and the
# GenAI modules: ~100 MB of resident memory in a process that serves a 0.3 MB booster. Against an
# HTTP(S) tracking server those reads are plain GETs of MLflow's documented REST API
# (``/api/2.0/mlflow/...``) and, for a server that proxies its artifact store (``mlflow server``'s
# default, ``mlflow-artifacts:/`` run URIs), of its artifact service. Any other tracking URI or
# artifact store goes through the MLflow client as before. Credentials: MLflow's own
# ``MLFLOW_TRACKING_TOKEN`` or ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``.

REST_API = "/api/2.0/mlflow"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
PROXIED_SCHEME = "mlflow-artifacts"
REST_TIMEOUT_S = 30.0


class _ApiError(Exception):
    """An MLflow REST error: its ``error_code`` (``RESOURCE_DOES_NOT_EXIST``...) and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@dataclass(frozen=True)
class VersionInfo:
    """What the read path needs of a model version (the fields of MLflow's ``ModelVersion``)."""

    version: str
    run_id: str
    tags: dict[str, str]


def _rest(settings: Settings) -> bool:
    return settings.mlflow_tracking_uri.startswith(("http://", "https://"))


def _auth() -> tuple[tuple[str, str] | None, dict[str, str]]:
    """(basic auth, headers) from MLflow's own credential variables."""
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return None, {"Authorization": f"Bearer {token}"}
    user, password = (os.environ.get(f"MLFLOW_TRACKING_{k}") for k in ("USERNAME", "PASSWORD"))
    return ((user, password or "") if user else None), {}


def _http_get(settings: Settings, path: str, params: dict[str, str] | None = None) -> Any:
    """GET ``path`` on the tracking server: the response, or _ApiError (MLflow's error body, or
    the transport failure after three attempts)."""
    import httpx
    from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed

    auth, headers = _auth()
    url = settings.mlflow_tracking_uri.rstrip("/") + path

    @retry(
        stop=stop_after_attempt(3),
        wait=wait_fixed(0.5),
        retry=retry_if_exception_type(httpx.TransportError),
        reraise=True,
    )
    def get() -> httpx.Response:
        return httpx.get(url, params=params, auth=auth, headers=headers, timeout=REST_TIMEOUT_S)

    try:
        resp = get()
    except httpx.HTTPError as exc:
        raise _ApiError("UNREACHABLE", f"{url}: {type(exc).__name__}: {exc}") from exc
    if resp.status_code != 200:
        try:
            body = resp.json()
            code, message = str(body["error_code"]), str(body.get("message", ""))
        except (ValueError, KeyError, TypeError):
            code, message = f"HTTP_{resp.status_code}", resp.text[:300]
        raise _ApiError(code, message)
    return resp


def _rest_version(ref: str, settings: Settings) -> VersionInfo:
    """``model-versions/get`` for a number, ``registered-models/alias`` for an alias."""
    name = settings.model_name
    if ref.isdigit():
        path, params = "/model-versions/get", {"name": name, "version": ref}
    else:
        path, params = "/registered-models/alias", {"name": name, "alias": ref}
    mv = _http_get(settings, REST_API + path, params).json()["model_version"]
    tags = {t["key"]: t.get("value", "") for t in mv.get("tags", [])}
    return VersionInfo(str(mv["version"]), str(mv.get("run_id", "")), tags)


def _proxied_artifact(run_id: str, path: str, settings: Settings) -> bytes | None:
    """The artifact's bytes from the server's artifact service, or None when the run's
    artifacts are not served by the tracking server (the MLflow client reads those)."""
    from urllib.parse import quote, urlparse

    info = _http_get(settings, REST_API + "/runs/get", {"run_id": run_id}).json()["run"]["info"]
    uri = urlparse(str(info.get("artifact_uri", "")))
    if uri.scheme != PROXIED_SCHEME or uri.netloc:
        return None
    root = uri.path.strip("/")
    resp = _http_get(settings, f"{ARTIFACTS_API}/{quote(root)}/{quote(path.lstrip('/'))}")
    return bytes(resp.content)


def ping(settings: Settings, timeout_s: float = 5.0, attempts: int = 3) -> None:
    """Fail fast (ModelError, within ~20 s) when the MLflow server does not answer ``/health``;
    MLflow's own client would retry for minutes. Non-HTTP tracking URIs are not checked."""
    import httpx
    from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed

    uri = settings.mlflow_tracking_uri.rstrip("/")
    if not uri.startswith(("http://", "https://")):
        return

    @retry(
        stop=stop_after_attempt(attempts),
        wait=wait_fixed(1.0),
        retry=retry_if_exception_type(httpx.HTTPError),
        reraise=True,
    )
    def health() -> None:
        httpx.get(f"{uri}/health", timeout=timeout_s).raise_for_status()

    try:
        health()
    except httpx.HTTPError as exc:
        raise ModelError(f"MLflow unreachable at {uri}: {type(exc).__name__}: {exc}") from exc


def read_run_json(run_id: str, filename: str, settings: Settings) -> dict[str, Any]:
    """A JSON artifact of a run under ``bundle/`` (``bundle.json``, ``baselines.json``)."""
    return dict(json.loads(read_run_bytes(run_id, f"{BUNDLE_DIR}/{filename}", settings)))


def read_run_bytes(run_id: str, path: str, settings: Settings) -> bytes:
    """The bytes of one run artifact; ModelError when it is absent or unreadable."""
    if _rest(settings):
        try:
            raw = _proxied_artifact(run_id, path, settings)
        except _ApiError as exc:
            raise ModelError(f"run {run_id} has no {path}: {exc}") from exc
        if raw is not None:
            return raw
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client(settings).download_artifacts(run_id, path, tmp)
            return Path(local).read_bytes()
        except (MlflowException, OSError) as exc:
            raise ModelError(f"run {run_id} has no {path}: {exc}") from exc


def sha256(data: bytes) -> str:
    """Hex SHA-256 of an artifact's bytes.

    >>> len(sha256(b"")), sha256(b"") == sha256(bytes())
    (64, True)
    """
    return hashlib.sha256(data).hexdigest()


def load_booster(raw: bytes, expected_sha256: str | None, what: str) -> Any:
    """An ``xgboost.Booster`` from UBJ/JSON bytes, only if they hash to ``expected_sha256``."""
    import xgboost

    if not expected_sha256:
        raise ModelIntegrityError(f"{what} has no {SHA256_TAG} tag: not a volstream booster")
    got = sha256(raw)
    if got != expected_sha256:
        raise ModelIntegrityError(
            f"{what}: {BOOSTER_FILE} does not match its registered hash "
            f"(sha256 {got[:16]}…, registered {expected_sha256[:16]}…)"
        )
    booster = xgboost.Booster()
    try:
        booster.load_model(bytearray(raw))
    except xgboost.core.XGBoostError as exc:
        raise ModelIntegrityError(f"{what}: not an XGBoost model: {exc}") from exc
    return booster


def load_bundle(ref: str, settings: Settings) -> ModelBundle:
    """Load ``champion``, ``challenger`` or a version number as a ready-to-score bundle.

    The booster is read as data (see the module docstring); a version without the hash tag, with
    another format, or whose bytes changed since registration raises ModelIntegrityError.
    """
    mv = _get_version(str(ref), settings)
    what = f"{settings.model_name} v{mv.version}"
    tags = dict(mv.tags or {})
    if not mv.run_id or tags.get(FORMAT_TAG) != BOOSTER_FORMAT:
        raise ModelIntegrityError(
            f"{what} is not a volstream model ({FORMAT_TAG}={tags.get(FORMAT_TAG)!r}, "
            f"expected {BOOSTER_FORMAT!r}); refused"
        )
    try:
        raw = read_run_bytes(mv.run_id, f"{BUNDLE_DIR}/{BOOSTER_FILE}", settings)
    except ModelError as exc:
        raise ModelIntegrityError(f"{what} refused: {exc}") from exc
    booster = load_booster(raw, tags.get(SHA256_TAG), what)
    booster.set_param({"nthread": 1})
    meta = read_run_json(mv.run_id, BUNDLE_FILE, settings)
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
        trained_until=int(meta.get("trained_until", 0)),
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
        "trained_until": bundle.trained_until,
    }


def log_bundle(bundle: ModelBundle, settings: Settings, files: dict[str, Any] | None = None) -> str:
    """Log the booster and its bundle into the *active* run, register it; returns the version.

    ``files`` are extra JSON documents written next to ``bundle.json`` (e.g. the baselines'
    parameters). The version's tags carry the booster's format and SHA-256 (checked on every
    load) and ``data.trained_until``.
    """
    import mlflow

    _use_server(settings)
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_bundle needs an active MLflow run")
    docs = {BUNDLE_FILE: bundle_meta(bundle), **(files or {})}
    for filename, doc in docs.items():
        mlflow.log_dict(doc, f"{BUNDLE_DIR}/{filename}")
    raw = bytes(bundle.booster.save_raw(raw_format="ubj"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / BOOSTER_FILE
        path.write_bytes(raw)
        mlflow.log_artifact(str(path), BUNDLE_DIR)
    tags = {
        FORMAT_TAG: BOOSTER_FORMAT,
        SHA256_TAG: sha256(raw),
        TRAINED_UNTIL_TAG: str(bundle.trained_until),
        "feature_version": bundle.feature_version,
    }
    version = register_version(run.info.run_id, tags, settings)
    log.info("model registered", extra={"model": settings.model_name, "version": version})
    return version


def register_version(run_id: str, tags: dict[str, str], settings: Settings) -> str:
    """A new version of the registered model from a run's ``bundle/`` folder (created on first
    use); returns its number."""
    from mlflow.exceptions import MlflowException

    c, name = client(settings), settings.model_name
    try:
        c.get_registered_model(name)
    except MlflowException:
        try:
            c.create_registered_model(name)
        except MlflowException as exc:  # created meanwhile by another trainer
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
    source = f"runs:/{run_id}/{BUNDLE_DIR}"
    return str(c.create_model_version(name, source, run_id=run_id, tags=tags).version)


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
