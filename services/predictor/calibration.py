"""The live side of the adaptive interval calibration (:mod:`services.common.adaptive_intervals`):
one state per loaded model version, fed by the resolved predictions, kept across a restart.

- **Scoring** (:func:`adaptive_bounds`): the stream's rows get their interval from their model's
  state, which also remembers the full-hour rows to learn from; ``POST /predict`` only peeks
  (a caller-chosen time must not move the state).
- **Learning** (:class:`IntervalLearner`): each resolved full-hour prediction of the champion or
  the shadow model goes to the state of the model version that made it.
- **Restart and reload**: a forced reload of the same version keeps its state object (like the
  drift monitor); the state is also written to ``<var_dir>/predictor/intervals/`` after each
  lesson and read back when the same model (:func:`snapshot_path`) is loaded again, so a
  restarted predictor continues where it stopped (the one or two lessons still waiting for their
  time are lost, and the full-hour predictions pending at the stop never teach). A new version
  starts from its own validation calibration.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from services.common.adaptive_intervals import AdaptiveIntervals
from services.common.schemas import FeatureVector
from services.common.vector_codec import VectorHead

log = logging.getLogger(__name__)


def live_intervals(bundle: Any, level: float, store: Path | None) -> AdaptiveIntervals | None:
    """The adaptive state of a freshly loaded model: its snapshot in ``store`` when one exists
    for the same model, else its validation calibration. None without a calibration."""
    cal = getattr(bundle, "intervals", None)
    if not cal or cal.get("feature") not in bundle.feature_names:
        return None
    aci = AdaptiveIntervals(cal, level, horizon_s=60 * int(getattr(bundle, "horizon_minutes", 60)))
    path = snapshot_path(store, bundle, level)
    if path is not None and path.exists():
        try:
            aci.restore(json.loads(path.read_text()))
            log.info("interval state restored", extra={"path": str(path)})
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("interval state unreadable: from validation", extra={"error": str(exc)})
    return aci


def snapshot_path(store: Path | None, bundle: Any, level: float) -> Path | None:
    """Where the state of this model at ``level`` is kept: keyed by name and version, and by a
    digest of its run, training time and calibration (a registry started afresh reuses
    version numbers; a snapshot must never reach another model)."""
    if store is None:
        return None
    who = [getattr(bundle, "run_id", ""), getattr(bundle, "trained_at", None)]
    doc = json.dumps({"cal": bundle.intervals, "level": level, "who": who}, sort_keys=True)
    digest = hashlib.sha256(doc.encode()).hexdigest()[:16]
    return store / f"{bundle.name}-v{bundle.version}-{digest}.json"


def adaptive_bounds(
    aci: AdaptiveIntervals,
    vectors: Sequence[FeatureVector | VectorHead],
    log_rv: np.ndarray,
    regime: np.ndarray,
    learn: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(rv_lo, rv_hi)`` of scored vectors, each from its symbol's state (``learn=False``:
    peek)."""
    first = vectors[0].symbol
    if all(fv.symbol == first for fv in vectors):  # the usual case: one symbol per batch
        if not learn:
            return aci.peek_many(first, log_rv, regime)
        return aci.predict_many(first, [fv.time for fv in vectors], log_rv, regime)
    lo, hi = np.empty(len(vectors)), np.empty(len(vectors))
    for symbol in dict.fromkeys(fv.symbol for fv in vectors):
        rows = np.array([fv.symbol == symbol for fv in vectors])
        if learn:
            times = [fv.time for fv in vectors if fv.symbol == symbol]
            lo[rows], hi[rows] = aci.predict_many(symbol, times, log_rv[rows], regime[rows])
        else:
            lo[rows], hi[rows] = aci.peek_many(symbol, log_rv[rows], regime[rows])
    return lo, hi


class _Loaded(Protocol):
    @property
    def bundle(self) -> Any: ...
    @property
    def intervals(self) -> AdaptiveIntervals | None: ...


class _Holder(Protocol):
    @property
    def models(self) -> Any: ...


class IntervalLearner:
    """Routes resolved predictions to the adaptive state of the model version that made them
    and keeps a snapshot of each state that learned."""

    def __init__(self, holder: _Holder, store: Path | None, level: float) -> None:
        self.holder, self.store, self.level = holder, store, level

    def observe(self, resolved: Iterable[Any]) -> int:
        """Teach the resolved predictions (``Resolved``); returns how many will teach."""
        models = self.holder.models
        loaded: list[_Loaded] = [m for m in (models.champion, models.challenger) if m is not None]
        by_version = {m.bundle.version: m for m in loaded if m.intervals is not None}
        taught: dict[str, _Loaded] = {}
        if not by_version:
            return 0
        for p, rv_real in resolved:
            m = by_version.get(getattr(p, "model_version", None))
            if m is None or m.intervals is None or p.time % m.intervals.every_s:
                continue  # only full-hour predictions were issued to learn from
            if m.intervals.learn_one(p.symbol, p.time, math.log(rv_real)):
                taught[m.bundle.version] = m
        for m in taught.values():
            self._save(m)
        return len(taught)

    def _save(self, m: _Loaded) -> None:
        path = snapshot_path(self.store, m.bundle, self.level)
        if path is None or m.intervals is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(m.intervals.state()))
            os.replace(tmp, path)  # atomic: a crash leaves the previous snapshot
        except OSError as exc:  # the state lives on in memory; a restart starts from validation
            log.warning("interval state not saved", extra={"path": str(path), "error": str(exc)})
