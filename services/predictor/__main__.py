"""``python -m services.predictor``: the REST API and the stream scorer in one process.

Memory: the process serves XGBoost *Booster* objects only, but ``import xgboost`` imports
scikit-learn whenever it is installed (for its sklearn-style estimators), and scikit-learn
imports scipy.stats: about 60 MB of resident memory the predictor never uses. ``main`` marks
scikit-learn as absent before xgboost is first imported (lazily, with the first model load), so
xgboost takes the path it takes when scikit-learn is not installed; the Booster API is the same.
See ``docs/api.md``, Memory.
"""

from __future__ import annotations

import signal
import sys

import uvicorn
import uvloop

from services.common.logging import configure_logging
from services.common.runtime import tune_gc
from services.common.settings import get_settings
from services.predictor.app import build_service, create_app
from services.predictor.settings import PredictorSettings


async def serve() -> int:
    settings, psettings = get_settings(), PredictorSettings()
    configure_logging(settings.log_level, service="predictor")
    service = build_service(settings, psettings)
    config = uvicorn.Config(
        create_app(service),
        host=psettings.host,
        port=psettings.port,
        loop="uvloop",
        http="httptools",
        access_log=psettings.access_log,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)

    def shutdown(_: BaseException) -> None:
        server.should_exit = True

    service.on_fatal = shutdown
    if psettings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(psettings.metrics_port, psettings.host, service.metrics.registry)
    # uvicorn re-raises the signal that stopped it once the handler it saved is back; a no-op
    # handler there lets a clean SIGTERM shutdown end in exit code 0 instead of death by signal
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    tune_gc()
    await server.serve()
    return 1 if service.failure else 0


#: Installed modules the predictor never needs but would import anyway (see the module doc).
UNUSED_MODULES = ("sklearn",)


def skip_unused_modules() -> None:
    """Make ``import`` of :data:`UNUSED_MODULES` raise ImportError in this process, as if they
    were not installed (a ``None`` entry in ``sys.modules``). No effect on one already imported.
    """
    for name in UNUSED_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def main() -> None:
    skip_unused_modules()
    sys.exit(uvloop.run(serve()))


if __name__ == "__main__":
    main()
