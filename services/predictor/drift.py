"""The predictor's data-drift monitor (the arithmetic lives in :mod:`services.common.drift`, shared
with the trainer that calibrates it and with ``volstream monitor replay``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.common.drift import Bins, DriftLimits, DriftMonitor, DriftTrace, fixed_limits, psi
from services.common.features import FEATURE_MEMORY_MINUTES

__all__ = ["Bins", "DriftLimits", "DriftMonitor", "DriftTrace", "limits_of", "monitor_for", "psi"]


def limits_of(
    bundle: Any,
    fallback_window: int = 10_080,
    fallback_threshold: float = 0.2,
    fallback_spans: int = 4,
) -> DriftLimits:
    """The bundle's calibrated limits; a model trained before calibration gets the old fixed
    rule (one window, one PSI limit, slow features held back)."""
    doc = getattr(bundle, "drift_limits", None)
    if doc:
        return DriftLimits.from_json(doc)
    return fixed_limits(
        bundle.feature_names,
        FEATURE_MEMORY_MINUTES,
        fallback_window,
        fallback_threshold,
        fallback_spans,
    )


def monitor_for(
    bundle: Any, exclude: Iterable[str] = (), limits: DriftLimits | None = None
) -> DriftMonitor:
    """The drift monitor of a model, exactly as the service builds it."""
    return DriftMonitor(
        bundle.feature_names,
        bundle.reference,
        bundle.feature_ranges,
        limits or limits_of(bundle),
        exclude,
    )
