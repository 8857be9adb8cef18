"""The one feature definition, shared by the streaming featurizer and the trainer.

``featurize_many`` (batch, a candle frame) and ``OnlineFeatures.update_many`` (incremental, a
micro-batch of candles) run the same numeric kernel, so they agree on every feature. See
``docs/features.md`` for the formulas, the gap rules and the warm-up.
"""

from __future__ import annotations

from services.common.features.batch import featurize_many
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
