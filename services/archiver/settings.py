"""The archiver's own knobs: environment variables with the ``ARCHIVER_`` prefix."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from services.common.settings import component_config


class ArchiverSettings(BaseSettings):
    """Settings of the lake archiver. Frozen: read once."""

    model_config = component_config("ARCHIVER_")

    group_id: str = "volstream-lake"
    """``ARCHIVER_GROUP_ID``: consumer group of the lake archiver."""
    batch_size: int = Field(default=20_000, ge=1)
    """``ARCHIVER_BATCH_SIZE``: most candles written per lake flush."""
    flush_s: float = Field(default=1.0, gt=0)
    """``ARCHIVER_FLUSH_S``: longest time candles wait in memory before a lake flush."""
    metrics_port: int = Field(default=9106, ge=0)
    """``ARCHIVER_METRICS_PORT``: where ``/metrics`` is served (0: off)."""
