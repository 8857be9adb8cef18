"""``python -m services.lag_exporter``: wiring only."""

from __future__ import annotations

import asyncio
from functools import partial

from prometheus_client import REGISTRY

from services.common.kafka import run_until_stopped
from services.common.logging import configure_logging
from services.common.metrics import serve_metrics
from services.common.settings import get_settings
from services.lag_exporter.app import LagCollector, run
from services.lag_exporter.settings import LagExporterSettings


def main() -> None:
    settings, lag = get_settings(), LagExporterSettings()
    configure_logging(settings.log_level, service="lag-exporter")
    collector = LagCollector()
    REGISTRY.register(collector)
    serve_metrics(lag.metrics_port)
    asyncio.run(run_until_stopped(partial(run, settings, lag, collector)))


if __name__ == "__main__":
    main()
