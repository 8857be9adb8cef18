"""The REST API's request and response models (the OpenAPI spec is generated from them).
Stream messages stay in ``services.common.schemas``; ``Prediction`` is reused as is."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.common.schemas import SYMBOL_PATTERN, Prediction

#: Feature times are unix seconds; bounded so every value fits JSON and int64 everywhere.
MAX_TIME = 4_102_444_800  # 2100-01-01


class PredictRequest(BaseModel):
    """A feature vector to score, as the featurizer would publish it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    symbol: str = Field(pattern=SYMBOL_PATTERN, examples=["BTC"])
    time: int | None = Field(
        default=None, ge=0, le=MAX_TIME, description="feature (candle) time; default: this minute"
    )
    feature_version: str = Field(min_length=1, max_length=200)
    features: dict[str, float | None] = Field(
        max_length=1000, description="feature name -> value (null: undefined)"
    )


class Health(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    ready: bool
    reasons: list[str] = Field(description="why not ready (empty when ready)")
    champion_version: str | None = None
    partitions: int = 0


class PredictionList(BaseModel):
    symbol: str
    count: int
    predictions: list[Prediction]


class DriftFill(BaseModel):
    """How full the model's drift windows are (a new version starts empty)."""

    method: str = Field(description="psi-null-quantile (calibrated) or fixed-psi (older model)")
    rows: int = Field(description="vectors seen since this version was loaded (up to window)")
    window: int = Field(description="the longest feature window, in vectors")
    fill: float = Field(description="rows / window: the ratio is exported once this reaches 1")
    warm: bool


class ModelCard(BaseModel):
    """One loaded model."""

    role: str
    name: str
    version: str
    run_id: str | None = None
    trained_at: float | None = None
    loaded_at: float
    feature_version: str
    feature_count: int
    bias_factor: float
    metrics: dict[str, float]
    drift: DriftFill | None = None


class ModelsInfo(BaseModel):
    champion: ModelCard | None
    challenger: ModelCard | None
    accuracy_fill: dict[str, float] = Field(
        default_factory=dict,
        description="per role: resolved predictions in the live-accuracy window / the count"
        " needed before its QLIKE is exported (ACCURACY_MIN_FILL), capped at 1",
    )
    last_error: str | None = Field(description="the last failed reload, if the latest failed")
    last_reload_at: float | None = None


class ReloadResult(ModelsInfo):
    ok: bool


class ErrorBody(BaseModel):
    detail: str
