"""Process-wide settings, read once from the environment (pydantic-settings).

One rule for every knob: the shared :class:`Settings` (what every component reads: the broker,
the symbols, MLflow, the data directories, the log level) take the field name upper-cased
(``kafka_bootstrap_servers`` -> ``KAFKA_BOOTSTRAP_SERVERS``); each component's own class adds its
prefix (``INGESTOR_``, ``VALIDATOR_``, ``FEATURIZER_``, ``ARCHIVER_``, ``PREDICTOR_``,
``TRAINER_``, ``LAG_EXPORTER_``) built by :func:`component_config`. No secret has a default.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: The repository root; ``var/`` (runtime state) and ``../shared/data`` hang off it.
REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Settings shared by every service. Frozen: read once, pass around."""

    model_config = SettingsConfigDict(env_file=None, frozen=True, extra="ignore")

    kafka_bootstrap_servers: str | None = None
    """``KAFKA_BOOTSTRAP_SERVERS``: an external broker (Redpanda/Kafka). Unset: the embedded
    broker on ``BROKER_HOST:BROKER_PORT`` is used (and started by ``volstream up``)."""
    broker_host: str = "127.0.0.1"
    """``BROKER_HOST``: where the embedded broker listens."""
    broker_port: int = 9092
    """``BROKER_PORT``: the embedded broker's port."""
    topic_partitions: int = Field(default=3, ge=1)
    """``TOPIC_PARTITIONS``: partitions of each data topic (created up front)."""
    topic_replication_factor: int = Field(default=1, ge=1)
    """``TOPIC_REPLICATION_FACTOR``: replicas of each topic created (3 on a 3-node cluster)."""
    symbols: Annotated[list[str], NoDecode] = ["BTC"]
    """``SYMBOLS``: comma-separated base symbols, e.g. ``BTC,ETH``."""
    mlflow_tracking_uri: str = "http://127.0.0.1:5000"
    """``MLFLOW_TRACKING_URI``: the MLflow server."""
    model_name: str = "volstream-rv60"
    """``MODEL_NAME``: the registered model's name prefix."""
    data_dir: Path = REPO_ROOT / "var" / "data"
    """``DATA_DIR``: checkpoints and the Parquet lake."""
    shared_data_dir: Path = REPO_ROOT.parent / "shared" / "data"
    """``SHARED_DATA_DIR``: the real recorded market data (read in place, never copied)."""
    var_dir: Path = REPO_ROOT / "var"
    """``VAR_DIR``: pids, logs, MLflow store and broker state of the local stack."""
    log_level: str = "INFO"
    """``LOG_LEVEL``"""

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        if isinstance(value, str):
            return [s.strip().upper() for s in value.split(",") if s.strip()]
        return value

    @property
    def bootstrap_servers(self) -> str:
        """The broker clients connect to: the external one, or the embedded one."""
        return self.kafka_bootstrap_servers or f"{self.broker_host}:{self.broker_port}"

    @property
    def embedded_broker(self) -> bool:
        """True when no external broker is configured."""
        return not self.kafka_bootstrap_servers


#: The environment prefix of each component's own settings class.
COMPONENT_PREFIXES = (
    "INGESTOR_",
    "VALIDATOR_",
    "FEATURIZER_",
    "ARCHIVER_",
    "PREDICTOR_",
    "TRAINER_",
    "LAG_EXPORTER_",
)


def metrics_off_env() -> dict[str, str]:
    """Environment that turns off every component's own Prometheus port (tests, benchmarks).

    >>> metrics_off_env()["VALIDATOR_METRICS_PORT"]
    '0'
    """
    return {f"{prefix}METRICS_PORT": "0" for prefix in COMPONENT_PREFIXES}


def component_config(prefix: str) -> SettingsConfigDict:
    """The settings config of one component: its env prefix, frozen, unknown variables ignored.

    >>> component_config("PREDICTOR_")["env_prefix"]
    'PREDICTOR_'
    """
    return SettingsConfigDict(env_prefix=prefix, env_file=None, frozen=True, extra="ignore")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The cached settings of this process."""
    return Settings()
