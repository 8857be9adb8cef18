"""The REST API's request and response models (the OpenAPI spec is generated from them).
Stream messages stay in ``services.common.schemas``; ``Prediction`` is reused as is."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from services.common.schemas import SYMBOL_PATTERN, Prediction

#: Feature times are unix seconds; bounded so every value fits JSON and int64 everywhere.
MAX_TIME = 4_102_444_800  # 2100-01-01
#: Feature values are bounded below 2**53, where every JSON integer is exactly a float, so the
#: published bound and the server's check agree to the last digit (features are logs, returns
#: and ratios: far inside it).
FEATURE_BOUND = 1e15
#: A feature value: a JSON number within the bound, or null (undefined).
FeatureValue = Annotated[float, Field(ge=-FEATURE_BOUND, le=FEATURE_BOUND)] | None


def _no_text_or_bool(value: Any) -> Any:
    """A JSON number or nothing: lax integer parsing would take ``"60"`` and ``true``."""
    if isinstance(value, str | bool):
        raise ValueError("Input should be a valid integer")
    return value


class PredictRequest(BaseModel):
    """A feature vector to score, as the featurizer would publish it."""

    # strict: ``true`` or ``"1"`` is not a feature value (and ``time`` takes 60.0, see there)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    symbol: str = Field(pattern=SYMBOL_PATTERN, examples=["BTC"])
    time: (
        Annotated[
            int,
            # lax: JSON's 60.0 is the integer 60, as in JSON Schema; 60.5 is not
            Field(ge=0, le=MAX_TIME, strict=False),
            BeforeValidator(_no_text_or_bool),
        ]
        | None
    ) = Field(default=None, description="feature (candle) time; default: this minute")
    feature_version: str = Field(min_length=1, max_length=200)
    features: dict[str, FeatureValue] = Field(
        max_length=1000, description="feature name -> value (null: undefined)"
    )


def predict_body_schema() -> dict[str, Any]:
    """``/predict``'s request body in the OpenAPI document: :class:`PredictRequest`, with every
    feature of this build listed, typed and required, and the one ``feature_version`` its models
    accept (another gives 409, a missing feature 422)."""
    from services.common.features import FEATURE_NAMES, FEATURE_VERSION

    schema = PredictRequest.model_json_schema()
    props = schema["properties"]
    value = props["features"]["additionalProperties"]  # number within the bound, or null
    props["features"] = {
        **props["features"],
        "properties": {name: {**value, "title": name} for name in FEATURE_NAMES},
        "required": list(FEATURE_NAMES),
    }
    props["feature_version"] = {**props["feature_version"], "enum": [FEATURE_VERSION]}
    return schema


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
