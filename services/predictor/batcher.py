"""Micro-batching of concurrent ``POST /predict`` calls: the vectors waiting at the same time are
scored in one XGBoost call per model, with their intervals, by the same core functions as the
stream loop (:func:`~services.predictor.core.score`, ``interval_bounds``,
``encode_predictions``).

Why: with the served model (~1,000 trees) an ``inplace_predict`` call has a fixed cost of about
300 µs, several times what each further row adds, so 32 requests scored one by one cost about
ten times what they cost together.

When: no timer. A batch is scored once the event loop has gone :data:`QUIET_TICKS` iterations
in a row without a new request joining it (every iteration polls the sockets, so requests
already sent are parsed and join), after :data:`MAX_TICKS` iterations at most, or at once when
it holds ``max_rows``. A lone request waits for a few loop iterations (microseconds); under load
a batch grows to the requests in flight.

Where: the XGBoost call of a batch runs in one worker thread (the C call releases the GIL), so
the event loop goes on reading, checking and answering requests on the other core meanwhile;
the rest (the matrix, intervals and messages) stays on the loop. A lone request pays the thread
hand-over (tens of µs) on top.

Errors stay per request: a request is checked (body, feature version, missing features) before
it joins; requests of different models (a swap between two requests) are scored apart, and a
model whose call fails fails only its own requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from services.common.features import HORIZON_MINUTES
from services.common.registry import ModelBundle
from services.common.schemas import FeatureVector
from services.predictor.core import encode_predictions, feature_matrix, interval_bounds, score
from services.predictor.models import LoadedModel

#: Loop iterations in a row without a newcomer before a batch is scored.
QUIET_TICKS = 2
#: Loop iterations a batch waits at most for newcomers.
MAX_TICKS = 16


@dataclass(frozen=True)
class _Waiting:
    model: LoadedModel
    vector: FeatureVector
    future: asyncio.Future[bytes]


class PredictBatcher:
    """Collects ``(model, vector)`` pairs and scores them together, one call per model."""

    def __init__(
        self,
        level: float,
        observe: Callable[[float], None] | None = None,
        max_rows: int = 64,
    ) -> None:
        self.level = level
        self.max_rows = max_rows
        self._observe = observe
        self._pending: list[_Waiting] = []
        self._tick_handle: asyncio.Handle | None = None
        self._running: set[asyncio.Task[None]] = set()
        #: XGBoost's call releases the GIL (ctypes): in this thread it runs while the event
        #: loop goes on serving; one worker, so batches are scored one after the other
        self._scorer = ThreadPoolExecutor(1, thread_name_prefix="predict-score")

    async def submit(self, model: LoadedModel, vector: FeatureVector) -> bytes:
        """The champion prediction of ``vector`` by ``model`` (checked against it by the
        caller), scored with whatever else is waiting, as its JSON (``Prediction.to_bytes()``)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._pending.append(_Waiting(model, vector, future))
        if len(self._pending) >= self.max_rows:
            self._flush()
        elif self._tick_handle is None:
            self._tick_handle = loop.call_soon(self._tick, 1, 0, 1)
        return await future

    def _tick(self, seen: int, quiet: int, ticks: int) -> None:
        """One loop iteration later: score, or wait another iteration for newcomers."""
        n = len(self._pending)
        quiet = quiet + 1 if n <= seen else 0
        if quiet < QUIET_TICKS and ticks < MAX_TICKS:
            loop = asyncio.get_running_loop()
            self._tick_handle = loop.call_soon(self._tick, n, quiet, ticks + 1)
            return
        self._tick_handle = None
        self._flush()

    def _flush(self) -> None:
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        pending, self._pending = self._pending, []
        groups: dict[int, list[_Waiting]] = {}
        for item in pending:
            groups.setdefault(id(item.model), []).append(item)
        loop = asyncio.get_running_loop()
        for items in groups.values():
            task = loop.create_task(self._answer(items))
            self._running.add(task)  # a reference until done (the loop keeps only weak ones)
            task.add_done_callback(self._running.discard)

    async def _answer(self, items: list[_Waiting]) -> None:
        """Score one model's requests and hand each its prediction (or the model's error)."""
        try:
            preds = await self._score(items[0].model, [it.vector for it in items])
        except Exception as exc:  # the model's call failed: its requests fail, not others
            for it in items:
                if not it.future.done():
                    it.future.set_exception(exc)
            return
        for it, pred in zip(items, preds, strict=True):
            if not it.future.done():  # a client that went away cancelled its future
                it.future.set_result(pred)

    async def _score(self, model: LoadedModel, vectors: list[FeatureVector]) -> list[bytes]:
        b = model.bundle
        matrix = feature_matrix([v.features for v in vectors], b.feature_names)
        loop = asyncio.get_running_loop()
        log_rv, seconds = await loop.run_in_executor(self._scorer, _timed_score, b, matrix)
        if self._observe:
            self._observe(seconds)
        # the live adaptive calibration, read only: a request's time is the caller's choice
        bounds = interval_bounds(b, log_rv, matrix, self.level, model.intervals, vectors, False)
        return encode_predictions(
            vectors, log_rv, b, "champion", HORIZON_MINUTES, bounds, self.level
        )[1]


def _timed_score(bundle: ModelBundle, matrix: np.ndarray) -> tuple[np.ndarray, float]:
    """:func:`~services.predictor.core.score` and its duration (run in the scoring thread)."""
    t0 = time.perf_counter()
    log_rv = score(bundle, matrix)
    return log_rv, time.perf_counter() - t0
