"""The validator's own knobs, from ``VALIDATOR_*`` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings

from services.common.settings import component_config
from services.validator.core import Rules


class ValidatorSettings(BaseSettings):
    """Frozen: read once at start-up."""

    model_config = component_config("VALIDATOR_")

    metrics_port: int = Field(default=9102, ge=0)
    """``VALIDATOR_METRICS_PORT``: the Prometheus endpoint (0 disables it, as tests do)."""
    group_id: str = "validator"
    """``VALIDATOR_GROUP_ID``: the consumer group on ticks.raw."""
    record_policy: Literal["dead-letter", "drop"] = "dead-letter"
    """``VALIDATOR_RECORD_POLICY``: a bad row in a batch that passes the gate."""
    max_invalid_fraction: float = Field(default=0.01, ge=0, le=1)
    """``VALIDATOR_MAX_INVALID_FRACTION``: above this share of bad rows, the batch is rejected."""
    min_rows: int = Field(default=1, ge=0)
    """``VALIDATOR_MIN_ROWS``: a batch with fewer rows is rejected."""
    max_log_return: float = Field(default=0.15, gt=0)
    """``VALIDATOR_MAX_LOG_RETURN``: |log return| per interval beyond which a row is implausible
    (the March 2020 crash peaked at 0.075 per minute)."""
    max_staleness_s: float = Field(default=900.0, ge=0)
    """``VALIDATOR_MAX_STALENESS_S``: a live batch whose newest candle is older is rejected
    (0 disables)."""
    poll_max_records: int = Field(default=10, ge=1)
    """``VALIDATOR_POLL_MAX_RECORDS``: RawBatches per poll (each up to ~2,000 rows)."""
    idle_fetch_max_wait_ms: int = Field(default=100, ge=0)
    """``VALIDATOR_IDLE_FETCH_MAX_WAIT_MS``: the fetch wait on ticks.raw after a poll that
    brought nothing (200 ms of silence), until records arrive again
    (:class:`services.common.kafka.IdleBackoff`): an idle consumer then costs the broker and
    itself ~20x fewer empty fetches, and the first batch after a silence waits up to this much
    longer. At or below ``fetch_max_wait_ms`` (5): off."""
    recover_window: int = Field(default=2000, ge=1)
    """``VALIDATOR_RECOVER_WINDOW``: ticks.clean records read per step when recovering marks."""
    revision_window_s: int = Field(default=86_400, ge=60)
    """``VALIDATOR_REVISION_WINDOW_S``: how far back the values of every emitted minute are kept
    (and recovered from ticks.clean after a restart), so that a re-sent minute with other values
    is told apart as ``revised`` and a never-emitted one as ``late``; older minutes are counted as
    ``duplicate`` / ``unverified``. CryptoCompare's live window is an hour; a day covers it."""

    def rules(self) -> Rules:
        """The pure core's view of these settings."""
        return Rules(
            max_invalid_fraction=self.max_invalid_fraction,
            min_rows=self.min_rows,
            max_log_return=self.max_log_return,
            max_staleness_s=self.max_staleness_s,
            policy=self.record_policy,
        )
