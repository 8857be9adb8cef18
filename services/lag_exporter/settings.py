"""The lag exporter's own knobs (environment variables)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

from services.common.settings import component_config


class LagExporterSettings(BaseSettings):
    """Settings of the lag exporter. Frozen: read once."""

    model_config = component_config("LAG_EXPORTER_")

    metrics_port: int = Field(default=9104, ge=0)
    """``LAG_EXPORTER_METRICS_PORT``: where ``/metrics`` is served (0 disables it, as tests do)."""
    poll_interval_s: float = Field(default=5.0, gt=0)
    """``LAG_EXPORTER_POLL_INTERVAL_S``: seconds between two reads of offsets."""
    groups: Annotated[list[str], NoDecode] = []
    """``LAG_EXPORTER_GROUPS``: comma-separated consumer groups to watch; empty: every group found.
    """
    timeout_s: float = Field(default=5.0, gt=0)
    """``LAG_EXPORTER_TIMEOUT_S``: limit of each admin request and of each end-offset read."""

    @field_validator("groups", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [g.strip() for g in value.split(",") if g.strip()]
        return value
