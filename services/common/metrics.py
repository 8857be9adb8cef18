"""Prometheus metrics endpoint for the stream services (ports 9101 ingestor, 9102 validator,
9103 featurizer; the predictor serves ``/metrics`` on its own HTTP port)."""

from __future__ import annotations

import logging
import os

from prometheus_client import start_http_server

log = logging.getLogger(__name__)

METRICS_PORTS = {"ingestor": 9101, "validator": 9102, "featurizer": 9103}


def serve_metrics(port: int, host: str | None = None) -> None:
    """Expose the default registry on host:port (port 0 disables).

    The host defaults to ``METRICS_HOST`` (``0.0.0.0`` in containers, so Prometheus can scrape
    across the network), else loopback.
    """
    host = host or os.environ.get("METRICS_HOST", "127.0.0.1")
    if port:
        start_http_server(port, addr=host)
        log.info("metrics endpoint up", extra={"port": port})
