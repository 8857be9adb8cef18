"""The predictor process: one FastAPI app whose lifespan runs the scoring loop, the side consumer
(realized closes and model events) and the registry poller in the same event loop.

``build_service`` wires the state; ``create_app`` wraps it in HTTP. A background task that dies
(the broker is gone, a bug) is an infrastructure failure: it is logged, ``/ready`` turns 503,
and ``on_fatal`` (the server's shutdown in production) ends the process for the supervisor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from fastapi import FastAPI

from services.common.features import HORIZON_MINUTES
from services.common.schemas import SYMBOL_PATTERN
from services.common.settings import Settings
from services.predictor.accuracy import LiveAccuracy
from services.predictor.batcher import PredictBatcher
from services.predictor.calibration import IntervalLearner
from services.predictor.metrics import PredictorMetrics
from services.predictor.middleware import BodyLimit, HttpMetrics, LatestFastPath, PredictFastPath
from services.predictor.models import MlflowRegistry, ModelHolder, Registry
from services.predictor.ring import PredictionRing
from services.predictor.settings import PredictorSettings
from services.predictor.stream import SideConsumer, StreamWorker, poll_models

log = logging.getLogger(__name__)


@dataclass
class Service:
    """Everything the routes and the loops share."""

    settings: Settings
    psettings: PredictorSettings
    metrics: PredictorMetrics
    holder: ModelHolder
    ring: PredictionRing
    accuracy: LiveAccuracy
    worker: StreamWorker
    side: SideConsumer
    batcher: PredictBatcher
    on_fatal: Callable[[BaseException], None] | None = None
    failure: str | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def fatal(self, task: asyncio.Task[None]) -> None:
        """Done-callback of the background tasks: a crash is fatal to the process."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        assert exc is not None
        self.failure = f"{task.get_name()} failed: {type(exc).__name__}: {exc}"
        log.critical(self.failure, exc_info=exc)
        if self.on_fatal:
            self.on_fatal(exc)


def build_service(
    settings: Settings, psettings: PredictorSettings, registry: Registry | None = None
) -> Service:
    """Wire the predictor's state (nothing starts here)."""
    metrics = PredictorMetrics()
    accuracy = LiveAccuracy(HORIZON_MINUTES, psettings.accuracy_window, psettings.accuracy_min_fill)
    holder = ModelHolder(
        registry or MlflowRegistry(settings),
        metrics,
        psettings.psi_window,
        psettings.psi_exclude,
        psettings.psi_min_spans,
        psettings.psi_threshold,
        on_new_champion=accuracy.reset,
        interval_level=psettings.interval_level,
        interval_store=settings.var_dir / "predictor" / "intervals",
    )
    accuracy.learner = IntervalLearner(holder, holder.interval_store, psettings.interval_level)
    ring = PredictionRing(psettings.ring_size)
    worker = StreamWorker(settings, psettings, holder, ring, accuracy, metrics)
    side = SideConsumer(settings, psettings, holder, accuracy, metrics)
    batcher = PredictBatcher(
        psettings.interval_level, metrics.prediction_latency.labels("rest").observe
    )
    return Service(settings, psettings, metrics, holder, ring, accuracy, worker, side, batcher)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the loops with the app; on shutdown let them finish their batch and commit."""
    service: Service = app.state.service
    stop = asyncio.Event()
    loops: dict[str, Coroutine[Any, Any, None]] = {
        "models": poll_models(service.holder, service.psettings, stop),
        "stream": service.worker.run(stop),
        "side": service.side.run(stop),
    }
    service.tasks = [asyncio.create_task(coro, name=name) for name, coro in loops.items()]
    for task in service.tasks:
        task.add_done_callback(service.fatal)
    try:
        yield
    finally:
        stop.set()
        _done, pending = await asyncio.wait(service.tasks, timeout=15)
        for task in pending:
            task.cancel()


def create_app(service: Service, run_loops: bool = True) -> FastAPI:
    """The HTTP face of the service; ``run_loops=False`` serves HTTP only (no Kafka, no
    registry polling: the API contract tests, where models are put in place by hand)."""
    from services.predictor.routes import health, metrics, model, predictions
    from services.predictor.routes.predictions import DEFAULT_SYMBOL, predict_answer

    app = FastAPI(
        title="volstream predictor",
        version="1",
        summary="Realized-volatility forecasts (next 60 minutes) for crypto pairs",
        lifespan=lifespan if run_loops else None,
        # Prometheus is our telemetry; FastAPI's OpenTelemetry hooks cost on every request
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.service = service
    # The routes join the app's own table, hot paths first: ``include_router`` keeps each
    # router as a nested level that every request walks (~3-10 µs a request, a tenth of what
    # serving ``/predictions/latest`` costs); the routers only carry tags, kept on their routes.
    for module in (predictions, health, model, metrics):
        app.router.routes.extend(module.router.routes)
    app.add_middleware(BodyLimit, max_bytes=service.psettings.max_body_bytes)
    app.add_middleware(HttpMetrics, metrics=service.metrics)
    # outermost: the two hot paths skip every layer above (they record their own metrics)
    app.add_middleware(
        PredictFastPath,
        answer=partial(predict_answer, service),
        stats=service.metrics.http,
        max_bytes=service.psettings.max_body_bytes,
    )
    app.add_middleware(
        LatestFastPath,
        latest=service.ring.latest_json,
        stats=service.metrics.http,
        pattern=SYMBOL_PATTERN,
        default=DEFAULT_SYMBOL,
    )
    return app
