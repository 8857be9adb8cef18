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

Where: on the event loop. Scoring in a worker thread (XGBoost's C call releases the GIL) was
tried: at 32 connections the batches come in lock-step (the loop has little else to do while a
batch scores), the thread's hand-over and its wait for the GIL after the call (up to the 5 ms
switch interval) added latency (p99 ~3x), and same-run A/B rates were a wash.

Errors stay per request: a request is checked (body, feature version, missing features) before
it joins; requests of different models (a swap between two requests) are scored apart, and a
model whose call fails fails only its own requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.common.features import HORIZON_MINUTES
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
        for items in groups.values():
            try:
                answers = self._score(items[0].model, [it.vector for it in items])
            except Exception as exc:  # the model's call failed: its requests fail, not others
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(exc)
                continue
            for it, answer in zip(items, answers, strict=True):
                if not it.future.done():  # a client that went away cancelled its future
                    it.future.set_result(answer)

    def _score(self, model: LoadedModel, vectors: list[FeatureVector]) -> list[bytes]:
        b = model.bundle
        t0 = time.perf_counter()
        matrix = feature_matrix([v.features for v in vectors], b.feature_names)
        log_rv = score(b, matrix)
        if self._observe:
            self._observe(time.perf_counter() - t0)
        # the live adaptive calibration, read only: a request's time is the caller's choice
        bounds = interval_bounds(b, log_rv, matrix, self.level, model.intervals, vectors, False)
        return encode_predictions(
            vectors, log_rv, b, "champion", HORIZON_MINUTES, bounds, self.level
        )[1]
