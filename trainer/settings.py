"""The trainer's own knobs: environment variables with the ``TRAINER_`` prefix.

The shared ones (``MLFLOW_TRACKING_URI``, ``MODEL_NAME``, ``DATA_DIR``...) stay in
:mod:`services.common.settings`; these only concern datasets, models and the promotion gate.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings

from services.common.settings import REPO_ROOT, component_config


class TrainerSettings(BaseSettings):
    """Dataset, model and gate settings. Frozen: read once, pass around."""

    model_config = component_config("TRAINER_")

    xgb_threads: int = Field(default=2, ge=1)
    """``TRAINER_XGB_THREADS``: XGBoost threads for training."""
    rv_floor: float = Field(default=1e-5, gt=0)
    """``TRAINER_RV_FLOOR``: RV below this is clamped before taking logs (a flat hour has RV 0)."""
    valid_start: str = "2024-07-01"
    """``TRAINER_VALID_START``: first day (UTC) of the validation split."""
    test_start: str = "2024-10-01"
    """``TRAINER_TEST_START``: first day (UTC) of the test split; it runs to the end of the data."""
    split_fractions: tuple[float, float] = (0.70, 0.85)
    """``TRAINER_SPLIT_FRACTIONS``: where validation and test start, as fractions of the origins,
    used when the dates above do not fall inside the data (a few months of candles)."""
    embargo_minutes: int = 60
    """``TRAINER_EMBARGO_MINUTES``: origins dropped before each split boundary, so no target
    overlaps."""
    train_step_minutes: int = Field(default=10, ge=1)
    """``TRAINER_TRAIN_STEP_MINUTES``: origin spacing for fitting (60 = hourly; denser adds
    overlapping samples: 20 beat 60 on validation QLIKE, 10 beat 20 on the 2024 walk-forward,
    docs/model.md). Validation and test are scored hourly."""
    refit_on_valid: bool = True
    """``TRAINER_REFIT_ON_VALID``: after early stopping and the bias factors are settled on
    validation, refit the model (same rounds) and the HAR baselines on train + validation, so the
    served model has seen the most recent data. The test split is never used for fitting."""
    xgb_max_depth: int = 4
    """``TRAINER_XGB_MAX_DEPTH``"""
    xgb_eta: float = 0.03
    """``TRAINER_XGB_ETA``: learning rate."""
    xgb_rounds: int = 2000
    """``TRAINER_XGB_ROUNDS``: the most boosting rounds; early stopping usually ends sooner."""
    xgb_early_stopping: int = 100
    """``TRAINER_XGB_EARLY_STOPPING``: rounds without validation improvement before stopping."""
    xgb_min_child_weight: float = 20.0
    """``TRAINER_XGB_MIN_CHILD_WEIGHT``"""
    xgb_subsample: float = 0.8
    """``TRAINER_XGB_SUBSAMPLE``"""
    xgb_colsample: float = 0.8
    """``TRAINER_XGB_COLSAMPLE``"""
    holdout_days: float = Field(default=14.0, ge=0)
    """``TRAINER_HOLDOUT_DAYS``: the most recent days of the candles are never fitted on, so the
    gate has a window after the challenger's training data (it also scores the test split, which
    no fitting uses)."""
    gate_margin_champion: float = 0.0
    """``TRAINER_GATE_MARGIN_CHAMPION``: on the gate's window the challenger's QLIKE must be below
    the champion's times (1 - margin)."""
    gate_margin_har: float = 0.0
    """``TRAINER_GATE_MARGIN_HAR``: ... below HAR's times (1 - margin)."""
    gate_margin_har_seasonal: float = 0.0
    """``TRAINER_GATE_MARGIN_HAR_SEASONAL``: ... below the seasonal HAR's times (1 - margin)."""
    gate_margin_new_features: float = 0.05
    """``TRAINER_GATE_MARGIN_NEW_FEATURES``: when the champion was built on another feature version
    (so it cannot be scored), the margin over the seasonal HAR instead. 5%: on Q4 2024 (2,208
    origins) the standard error of the model's QLIKE gain over the seasonal HAR is about 2.3%
    (from the Diebold-Mariano statistic), so a new feature set must win by about two of them
    where the usual margin only asks for a win (see docs/model.md)."""
    gate_min_origins: int = Field(default=168, ge=1)
    """``TRAINER_GATE_MIN_ORIGINS``: fewer hourly origins in the window is a refusal (168: one
    week, so every hour of every weekday is scored at least once)."""
    gate_champion_model: str | None = None
    """``TRAINER_GATE_CHAMPION_MODEL``: read the champion from this registered model instead of
    ``MODEL_NAME`` (CI registers a pull request's model under its own name)."""
    datasets_dir: Path = REPO_ROOT / "data" / "datasets"
    """``TRAINER_DATASETS_DIR``: DVC-tracked dataset files."""
    dvc_remote: str | None = None
    """``TRAINER_DVC_REMOTE``: an S3/MinIO URL for datasets; unset, the repo's default local remote.
    """
    dvc_enabled: bool = True
    """``TRAINER_DVC_ENABLED``: version datasets with DVC (off: fingerprint by md5 only)."""
    seed: int = 7
    """``TRAINER_SEED``"""
