"""``python -m services.ingestor``: live polling unless ``INGEST_MODE`` says backfill or replay."""

from __future__ import annotations

import asyncio

from services.common.kafka import run_until_stopped
from services.common.logging import configure_logging
from services.common.metrics import serve_metrics
from services.common.settings import get_settings
from services.ingestor.app import run
from services.ingestor.settings import IngestorSettings


def main() -> None:
    settings, cfg = get_settings(), IngestorSettings()
    configure_logging(settings.log_level, service="ingestor")
    serve_metrics(cfg.metrics_port)
    asyncio.run(run_until_stopped(lambda stop: run(settings, cfg, stop)))


if __name__ == "__main__":
    main()
