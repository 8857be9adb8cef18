"""The loaded models and their hot reload.

``ModelHolder.models`` is one immutable :class:`ModelSet` (champion, challenger). A reload loads
the new bundles in a worker thread while the old ones keep serving, then swaps the whole set with
one reference assignment; a request or micro-batch that already took the old set finishes on it.
A failed load keeps the old set and is reported (metric, log, ``last_error`` in ``/model``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from services.common.adaptive_intervals import AdaptiveIntervals
from services.common.errors import ModelError
from services.common.intervals import DEFAULT_LEVEL
from services.common.registry import ModelBundle
from services.common.settings import Settings
from services.predictor.accuracy import HarSeasonal
from services.predictor.calibration import live_intervals
from services.predictor.core import scorer_of
from services.predictor.drift import DriftMonitor, limits_of, monitor_for
from services.predictor.metrics import PredictorMetrics

log = logging.getLogger(__name__)


class Registry(Protocol):
    """Where bundles come from (the MLflow adapter in production)."""

    def load(self, ref: str) -> Any: ...

    def version(self, alias: str) -> str | None: ...


class MlflowRegistry:
    """The MLflow model registry, through ``services.common.registry``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def load(self, ref: str) -> Any:
        from services.common.registry import load_bundle

        return load_bundle(ref, self.settings)

    def version(self, alias: str) -> str | None:
        from services.common.registry import alias_version

        return alias_version(alias, self.settings)


class StaticRegistry:
    """Bundles already in memory, by version, with settable aliases: HTTP-only serving of a
    model at hand (benchmarks, API contract tests) without an MLflow server."""

    def __init__(self, *bundles: Any, champion: str | None = None) -> None:
        self.bundles = {str(b.version): b for b in bundles}
        self.aliases: dict[str, str] = {"champion": champion} if champion else {}
        self.broken: set[str] = set()

    def version(self, alias: str) -> str | None:
        return self.aliases.get(alias)

    def load(self, ref: str) -> Any:
        version = self.aliases.get(ref, ref)
        if version in self.broken or version not in self.bundles:
            raise ModelError(f"cannot load model version {version!r}")
        return self.bundles[version]


@dataclass(frozen=True)
class LoadedModel:
    """A bundle in service, with its data-drift monitor and its HAR-seasonal baseline.

    A reload of the *same* version (``force``) gets a new bundle but keeps the monitor and the
    adaptive interval state, so the drift windows and the calibration carry on; a new version
    starts afresh (:mod:`services.predictor.calibration`)."""

    bundle: ModelBundle
    drift: DriftMonitor
    loaded_at: float
    baseline: HarSeasonal | None = None
    intervals: AdaptiveIntervals | None = None

    @cached_property
    def feature_set(self) -> frozenset[str]:
        """The model's feature names as a set (``POST /predict`` checks a body against it)."""
        return frozenset(self.bundle.feature_names)


@dataclass(frozen=True)
class ModelSet:
    """What serves right now; replaced as a whole, never mutated."""

    champion: LoadedModel | None = None
    challenger: LoadedModel | None = None


class ModelHolder:
    """Owns the current ModelSet and swaps it."""

    def __init__(
        self,
        registry: Registry,
        metrics: PredictorMetrics,
        psi_window: int = 1440,
        psi_exclude: Sequence[str] = (),
        psi_min_spans: int = 4,
        psi_threshold: float = 0.2,
        on_new_champion: Any = None,
        interval_level: float = DEFAULT_LEVEL,
        interval_store: Path | None = None,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.psi_window = psi_window
        self.psi_exclude = list(psi_exclude)
        self.psi_min_spans = psi_min_spans
        self.psi_threshold = psi_threshold
        self.on_new_champion = on_new_champion  # called when the champion's version changes
        self.interval_level, self.interval_store = interval_level, interval_store
        self.models = ModelSet()
        self.last_error: str | None = None
        self.last_reload_at: float | None = None
        self.loaded = asyncio.Event()
        self._lock = asyncio.Lock()

    async def reload(self, force: bool = False) -> bool:
        """Bring the set up to the registry's aliases; True when it now matches them."""
        async with self._lock:
            old = self.models
            try:
                champion = await self._fetch("champion", old.champion, force)
                challenger = await self._fetch("challenger", old.challenger, force)
            except Exception as exc:  # any load failure: keep serving the old set
                self._failed(exc, old)
                return False
            if challenger is not None and challenger.bundle.version == champion.bundle.version:
                challenger = None
            if (champion, challenger) != (old.champion, old.challenger):
                self.models = ModelSet(champion, challenger)  # the atomic swap
                self._swapped(old)
            self.last_error = None
            self.last_reload_at = time.time()
            self.loaded.set()
            return True

    async def _fetch(self, alias: str, current: LoadedModel | None, force: bool) -> Any:
        version = await asyncio.to_thread(self.registry.version, alias)
        if version is None:
            if alias == "champion":
                raise ModelError("no model has the alias 'champion' in the registry")
            return None
        if current is not None and current.bundle.version == version and not force:
            return current
        bundle = await asyncio.to_thread(self.registry.load, version)
        bundle.booster.set_param({"nthread": 1})  # single-row overhead: 1 thread is fastest
        # its scorer (and tree table, ~75 ms) now, off the loop, not on the first batch
        await asyncio.to_thread(scorer_of, bundle.booster)
        if current is not None and current.bundle.version == version:
            drift, adaptive = current.drift, current.intervals  # same model: still valid
        else:
            drift = self._monitor(bundle)
            adaptive = live_intervals(bundle, self.interval_level, self.interval_store)
        return LoadedModel(bundle, drift, time.time(), baseline_of(bundle), adaptive)

    def _monitor(self, bundle: Any) -> DriftMonitor:
        limits = limits_of(bundle, self.psi_window, self.psi_threshold, self.psi_min_spans)
        return monitor_for(bundle, self.psi_exclude, limits)

    def _failed(self, exc: Exception, old: ModelSet) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:1000]
        self.last_reload_at = time.time()
        if old.champion is None and isinstance(exc, ModelError):
            log.warning("no champion model yet", extra={"error": self.last_error})
            return
        self.metrics.reload_failures.inc()
        log.error("model reload failed; keeping the old models", exc_info=exc)

    def _swapped(self, old: ModelSet) -> None:
        m = self.metrics
        for gauge in (m.model_info, m.test_qlike, m.test_rmse):
            gauge.clear()
        new = self.models.champion
        if old.champion is None or new is None or old.champion.drift is not new.drift:
            clear_drift(m)  # a new monitor: nothing it exports is known yet
        was = old.champion.bundle.version if old.champion is not None else None
        if new is not None and was != new.bundle.version:
            clear_accuracy(m)
            if self.on_new_champion is not None:
                self.on_new_champion()
        for role, lm in (("champion", self.models.champion), ("shadow", self.models.challenger)):
            if lm is None:
                continue
            b = lm.bundle
            m.model_info.labels(b.name, b.version, role).set(1)
            for gauge, key in ((m.test_qlike, "test_qlike"), (m.test_rmse, "test_rmse")):
                if key in b.metrics:
                    gauge.labels(role).set(b.metrics[key])
            prev = old.champion if role == "champion" else old.challenger
            if prev is None or prev.bundle.version != b.version:
                m.reloads.labels(role).inc()
                log.info("model loaded", extra={"role": role, "version": b.version})


def baseline_of(bundle: Any) -> HarSeasonal | None:
    """The bundle's HAR-seasonal baseline, or None for a model saved without it."""
    params = getattr(bundle, "har_seasonal", None)
    if not params or any(n not in bundle.feature_names for n in params.get("inputs", ["?"])):
        return None
    return HarSeasonal(params, bundle.feature_names)


def clear_drift(m: PredictorMetrics) -> None:
    """Remove every series the champion's drift monitor feeds (none is stale then)."""
    for gauge in (m.feature_psi, m.feature_drift_threshold):
        gauge.clear()
    m.drift_ratio.clear()


def clear_accuracy(m: PredictorMetrics) -> None:
    """Remove the live-accuracy series (a new champion's windows start empty)."""
    for gauge in (m.live_qlike, m.live_rmse, m.interval_coverage):
        gauge.clear()
