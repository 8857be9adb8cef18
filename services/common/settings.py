"""Process-wide settings, read once from the environment (pydantic-settings).

Every knob is an environment variable; the field name upper-cased is the variable name
(``kafka_bootstrap_servers`` -> ``KAFKA_BOOTSTRAP_SERVERS``). No secret has a default.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
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
    quote_symbol: str = "USD"
    """``QUOTE_SYMBOL``: the quote currency asked of CryptoCompare."""
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
    cryptocompare_base_url: str = "https://min-api.cryptocompare.com"
    """``CRYPTOCOMPARE_BASE_URL``: the API, or the local emulator."""
    cryptocompare_api_key: SecretStr | None = None
    """``CRYPTOCOMPARE_API_KEY``: needed by the real API since May 2026; no default."""
    predictor_host: str = "127.0.0.1"
    """``PREDICTOR_HOST``"""
    predictor_port: int = 8000
    """``PREDICTOR_PORT``"""
    admin_api_key: SecretStr | None = None
    """``ADMIN_API_KEY``: guards admin endpoints; no default, so admin calls fail closed."""
    log_level: str = "INFO"
    """``LOG_LEVEL``"""
    xgb_threads: int = Field(default=2, ge=1)
    """``XGB_THREADS``: XGBoost threads for training."""

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The cached settings of this process."""
    return Settings()
