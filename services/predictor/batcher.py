"""Opportunistic micro-batching of concurrent ``POST /predict`` calls: requests arriving in the
same event-loop turn are scored in one XGBoost call (its fixed cost is most of a single row's).
No timer: the batch is flushed on the next loop iteration, so a lone request waits for nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np

from services.predictor.core import score
from services.predictor.models import LoadedModel


class PredictBatcher:
    """Collects rows per model and scores them together."""

    def __init__(self, observe: Callable[[float], None] | None = None) -> None:
        self._pending: list[tuple[LoadedModel, np.ndarray, asyncio.Future[float]]] = []
        self._observe = observe

    async def submit(self, model: LoadedModel, row: np.ndarray) -> float:
        """The (bias-adjusted) log RV of one row, scored with whatever else is pending."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[float] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((model, row, fut))
        return await fut

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        groups: dict[int, list[tuple[LoadedModel, np.ndarray, asyncio.Future[float]]]] = {}
        for item in pending:
            groups.setdefault(id(item[0]), []).append(item)
        for items in groups.values():
            try:
                t0 = time.perf_counter()
                out = score(items[0][0].bundle, np.vstack([row for _, row, _ in items]))
                if self._observe:
                    self._observe(time.perf_counter() - t0)
            except Exception as exc:  # hand the failure to every waiting request
                for *_, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, _, fut), value in zip(items, out.tolist(), strict=True):
                if not fut.done():
                    fut.set_result(value)
