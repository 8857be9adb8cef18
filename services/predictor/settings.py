"""The predictor's own knobs: environment variables with the ``PREDICTOR_`` prefix.

The model name and the MLflow URI are shared settings (``services.common.settings``); the forecast
horizon is part of the target's definition (``services.common.features.HORIZON_MINUTES``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode

from services.common.settings import component_config


class PredictorSettings(BaseSettings):
    """Frozen predictor settings, read once at start."""

    model_config = component_config("PREDICTOR_")

    host: str = "127.0.0.1"
    """``PREDICTOR_HOST``: where the REST API listens."""
    port: int = Field(default=8000, ge=0)
    """``PREDICTOR_PORT``: the REST API's port (``/metrics`` is served there too)."""
    admin_api_key: SecretStr | None = None
    """``PREDICTOR_ADMIN_API_KEY``: guards the admin endpoints; no default, so admin calls fail
    closed."""
    metrics_port: int = 0
    """``PREDICTOR_METRICS_PORT``: an extra Prometheus port; 0 (default) serves ``/metrics`` on the
    HTTP port only."""
    consumer_group: str = "predictor"
    """``PREDICTOR_CONSUMER_GROUP``: the predictor's consumer group on ``features``."""
    model_poll_s: float = Field(default=30.0, gt=0)
    """``PREDICTOR_MODEL_POLL_S``: fallback polling interval of the registry aliases (seconds)."""
    model_wait_s: float = Field(default=5.0, gt=0)
    """``PREDICTOR_MODEL_WAIT_S``: retry interval while no champion exists yet (seconds)."""
    batch_max: int = Field(default=2000, ge=1)
    """``PREDICTOR_BATCH_MAX``: largest micro-batch of feature vectors scored in one call."""
    idle_fetch_max_wait_ms: int = Field(default=100, ge=0)
    """``PREDICTOR_IDLE_FETCH_MAX_WAIT_MS``: the fetch wait on ``features`` after a poll that
    brought nothing (100 ms of silence), until vectors arrive again
    (:class:`services.common.kafka.IdleBackoff`). Live, vectors come once a minute per symbol:
    at the 5 ms wait the idle loop costs the broker and itself ~7 % of a core each; the price
    is up to this much on the first vector after a silence. 0 turns it off."""
    ring_size: int = Field(default=20_000, ge=1)
    """``PREDICTOR_RING_SIZE``: champion predictions kept per symbol for ``GET /predictions``."""
    psi_window: int = Field(default=10_080, ge=10)
    """``PREDICTOR_PSI_WINDOW``: only for models trained before drift calibration (no
    ``drift_limits`` in their bundle): the one window of the old fixed-PSI rule. Calibrated
    models carry a window per feature."""
    psi_exclude: Annotated[list[str], NoDecode] = ["hod_sin", "hod_cos", "dow_sin", "dow_cos"]
    """``PREDICTOR_PSI_EXCLUDE``: comma-separated features left out of PSI (calendar encodings)."""
    psi_min_spans: int = Field(default=4, ge=1)
    """``PREDICTOR_PSI_MIN_SPANS``: old fixed-PSI rule only: a feature enters PSI once the window
    holds this many of its memories (``FEATURE_MEMORY_MINUTES``)."""
    psi_threshold: float = 0.2
    """``PREDICTOR_PSI_THRESHOLD``: old fixed-PSI rule only: the one PSI limit of every feature."""
    accuracy_window: int = Field(default=1440, ge=1)
    """``PREDICTOR_ACCURACY_WINDOW``: resolved predictions per role in the rolling QLIKE/RMSE (a
    day of minutes: ``ModelAccuracyDegraded`` compares the champion with the HAR-seasonal
    baseline over it)."""
    accuracy_min_fill: int = Field(default=720, ge=1)
    """``PREDICTOR_ACCURACY_MIN_FILL``: resolved predictions a role's window needs before its
    live QLIKE/RMSE are exported (half a day: fewer hours say little about a day-long ratio)."""
    interval_level: float = Field(default=0.8, gt=0, lt=1)
    """``PREDICTOR_INTERVAL_LEVEL``: central probability of each prediction's ``[rv_lo, rv_hi]``."""
    realized_offset_reset: Literal["earliest", "latest"] = "latest"
    """``PREDICTOR_REALIZED_OFFSET_RESET``: where the side consumer of ``ticks.clean`` and
    ``model.events`` starts (no group, nothing committed)."""
    max_body_bytes: int = Field(default=65_536, ge=1024)
    """``PREDICTOR_MAX_BODY_BYTES``: request bodies above this get 413."""
    access_log: bool = False
    """``PREDICTOR_ACCESS_LOG``: uvicorn access log (off: the metrics say it all, and it costs)."""

    @field_validator("psi_exclude", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        return value
