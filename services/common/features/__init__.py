"""The one feature definition, shared by the streaming featurizer and the trainer.

``featurize_many`` (batch, a candle frame) and ``OnlineFeatures.update_many`` (incremental, a
micro-batch of candles) run the same numeric kernel, so they agree on every feature. See
``docs/features.md`` for the formulas, the gap rules and the warm-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.common.features.online import FeatureRow, OnlineFeatures
from services.common.features.spec import (
    FEATURE_MEMORY_MINUTES,
    FEATURE_NAMES,
    FEATURE_SET_NAME,
    FEATURE_VERSION,
    HISTORY_MINUTES,
    HORIZON_MINUTES,
    WARMUP_MINUTES,
)

if TYPE_CHECKING:
    from services.common.features.batch import featurize_many


def __getattr__(name: str) -> Any:
    """``featurize_many`` on first use: the batch path needs pandas, the services do not (the
    predictor and the featurizer never import it, which keeps ~40 MB out of their memory)."""
    if name == "featurize_many":
        from services.common.features.batch import featurize_many

        return featurize_many
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FEATURE_MEMORY_MINUTES",
    "FEATURE_NAMES",
    "FEATURE_SET_NAME",
    "FEATURE_VERSION",
    "HISTORY_MINUTES",
    "HORIZON_MINUTES",
    "WARMUP_MINUTES",
    "FeatureRow",
    "OnlineFeatures",
    "featurize_many",
]
