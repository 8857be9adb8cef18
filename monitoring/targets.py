"""What Prometheus scrapes: one job per process, on loopback locally or by compose service name.

``volstream up`` runs every service on 127.0.0.1 with fixed ports; docker compose reaches them by
service name. Both Prometheus configs are rendered from this one table.

    >>> [j.local for j in JOBS if j.name == "predictor"]
    ['127.0.0.1:8000']
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic_settings import BaseSettings

from services.archiver.settings import ArchiverSettings
from services.featurizer.settings import FeaturizerSettings
from services.ingestor.settings import IngestorSettings
from services.lag_exporter.settings import LagExporterSettings
from services.predictor.settings import PredictorSettings
from services.validator.settings import ValidatorSettings


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


def default_port(settings: type[BaseSettings], field: str = "metrics_port") -> int:
    """A service's default port, read from its settings class: one definition per port.

    >>> default_port(ValidatorSettings)
    9102
    """
    return int(settings.model_fields[field].default)


LAG_EXPORTER_PORT = default_port(LagExporterSettings)

JOBS: tuple[Job, ...] = (
    Job("ingestor", default_port(IngestorSettings), "ingestor"),
    Job("validator", default_port(ValidatorSettings), "validator"),
    Job("featurizer", default_port(FeaturizerSettings), "featurizer"),
    Job("archiver", default_port(ArchiverSettings), "archiver"),
    Job("predictor", default_port(PredictorSettings, "port"), "predictor"),
    Job("kafka-lag", LAG_EXPORTER_PORT, "lag-exporter"),
    Job("prometheus", PROMETHEUS_PORT, "prometheus"),
    Job("alertmanager", ALERTMANAGER_PORT, "alertmanager"),
)
