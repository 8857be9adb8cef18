"""What Prometheus scrapes: one job per process, on loopback locally or by compose service name.

``volstream up`` runs every service on 127.0.0.1 with fixed ports; docker compose reaches them by
service name. Both Prometheus configs are rendered from this one table.

    >>> [j.local for j in JOBS if j.name == "predictor"]
    ['127.0.0.1:8000']
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    """A scrape job: its name, its local and compose addresses, and its metrics path."""

    name: str
    port: int
    compose_host: str
    metrics_path: str = "/metrics"

    @property
    def local(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def compose(self) -> str:
        return f"{self.compose_host}:{self.port}"


PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
#: The webhook sink that receives Alertmanager's notifications locally (monitoring.webhook_sink).
WEBHOOK_PORT = 9105
LAG_EXPORTER_PORT = 9104

JOBS: tuple[Job, ...] = (
    Job("ingestor", 9101, "ingestor"),
    Job("validator", 9102, "validator"),
    Job("featurizer", 9103, "featurizer"),
    Job("predictor", 8000, "predictor"),
    Job("kafka-lag", LAG_EXPORTER_PORT, "lag-exporter"),
    Job("prometheus", PROMETHEUS_PORT, "prometheus"),
    Job("alertmanager", ALERTMANAGER_PORT, "alertmanager"),
)
