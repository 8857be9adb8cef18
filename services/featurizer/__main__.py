"""``python -m services.featurizer``: one Faust worker of the streaming featurizer.

Start more with another ``FEATURIZER_WEB_PORT`` (or 0) and ``FEATURIZER_WORKER_ID``: workers share
the ``FEATURIZER_APP_ID`` group and split the partitions of ``ticks.clean``.
"""

from __future__ import annotations

import asyncio

import faust

from services.common import kafka
from services.common.logging import configure_logging
from services.common.metrics import serve_metrics
from services.common.runtime import tune_gc
from services.common.settings import get_settings
from services.featurizer.app import build, internal_topics
from services.featurizer.settings import FeaturizerSettings


def main() -> None:
    settings = get_settings()
    fs = FeaturizerSettings()
    configure_logging(settings.log_level, service="featurizer")
    asyncio.run(kafka.ensure_topics(settings, extra=internal_topics(fs)))
    serve_metrics(fs.metrics_port)
    app = build(settings, fs)
    tune_gc()
    worker = faust.Worker(
        app,
        loglevel=settings.log_level.lower().replace("warning", "warn"),
        override_logging=False,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
