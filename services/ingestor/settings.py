"""The ingestor's own knobs: environment variables with the ``INGESTOR_`` prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from services.common.settings import component_config


class IngestorSettings(BaseSettings):
    """Frozen, read once in ``__main__`` or the CLI and passed around."""

    model_config = component_config("INGESTOR_")

    cryptocompare_base_url: str = "https://min-api.cryptocompare.com"
    """``INGESTOR_CRYPTOCOMPARE_BASE_URL``: the API, or the local emulator."""
    cryptocompare_api_key: SecretStr | None = None
    """``INGESTOR_CRYPTOCOMPARE_API_KEY``: needed by the real API since May 2026; no default."""
    quote_symbol: str = "USD"
    """``INGESTOR_QUOTE_SYMBOL``: the quote currency asked of CryptoCompare."""
    mode: Literal["live", "backfill", "replay"] = "live"
    """``INGESTOR_MODE``: what ``python -m services.ingestor`` does (default ``live``)."""
    poll_interval_s: float = Field(default=60.0, gt=0)
    """``INGESTOR_POLL_INTERVAL_S``: the live schedule: polls fall on multiples of it (a minute:
    just after each minute closes), shifted by the availability lag each symbol has shown."""
    poll_align: bool = True
    """``INGESTOR_POLL_ALIGN``: retry quickly (``INGESTOR_ALIGN_RETRY_S``) while the API still
    shows the minute that just ended as open; off: one poll per tick."""
    align_retry_s: float = Field(default=0.25, gt=0, le=5)
    """``INGESTOR_ALIGN_RETRY_S``: sub-second wait between tries for a closed minute not yet
    served."""
    align_window_s: float = Field(default=15.0, gt=0)
    """``INGESTOR_ALIGN_WINDOW_S``: after this long past the minute, stop retrying until the next
    tick."""
    warmup_days: float = Field(default=7.0, ge=0, le=7)
    """``INGESTOR_WARMUP_DAYS``: history each symbol gets before its first live poll (the lake,
    then the API's 7 days of minutes); 0 turns the warm-up off."""
    rate_per_second: int = Field(default=16, ge=0)
    """``INGESTOR_RATE_PER_SECOND``: client-side cap on API calls (0: none); CryptoCompare allows
    20/s, and calls granted a second apart can reach it closer together, hence the margin."""
    rate_per_minute: int = Field(default=270, ge=0)
    """``INGESTOR_RATE_PER_MINUTE``: client-side cap on API calls (CryptoCompare: 300/min)."""
    rate_per_hour: int = Field(default=0, ge=0)
    """``INGESTOR_RATE_PER_HOUR``: client-side cap per hour (0: none; the free tier's 3,000/h
    cannot carry 50 symbols polled every minute, so set it to your plan's)."""
    poll_limit: int = Field(default=60, ge=1, le=2000)
    """``INGESTOR_POLL_LIMIT``: rows asked per live poll (gaps beyond it are paged back with
    ``toTs``)."""
    page_limit: int = Field(default=2000, ge=1, le=2000)
    """``INGESTOR_PAGE_LIMIT``: rows asked per page when paging back (gap fill, backfill)."""
    max_pages: int = Field(default=12, ge=1)
    """``INGESTOR_MAX_PAGES``: safety bound on pages per gap fill (7 days of minutes is 6 pages)."""
    backfill_days: float = Field(default=1.0, gt=0)
    """``INGESTOR_BACKFILL_DAYS``: how far back ``backfill`` reaches."""
    replay_file: Path | None = None
    """``INGESTOR_REPLAY_FILE``: Parquet (shared layout) or CryptoCompare JSON to replay."""
    replay_speed: str = "max"
    """``INGESTOR_REPLAY_SPEED``: a multiple of real time (e.g. ``600``) or ``max``."""
    replay_symbol: str | None = None
    """``INGESTOR_REPLAY_SYMBOL``: the symbol of the replayed file (default: from the file name)."""
    replay_resume: bool = False
    """``INGESTOR_REPLAY_RESUME``: skip candles up to the replay checkpoint (a restarted replay)."""
    chunk_size: int = Field(default=500, ge=1, le=5000)
    """``INGESTOR_CHUNK_SIZE``: at most this many candles per RawBatch."""
    exchange: str = "CCCAGG"
    """``INGESTOR_EXCHANGE``: CryptoCompare's ``e`` parameter."""
    http_timeout_s: float = Field(default=10.0, gt=0)
    """``INGESTOR_HTTP_TIMEOUT_S``: per-request timeout."""
    retry_attempts: int = Field(default=4, ge=1)
    """``INGESTOR_RETRY_ATTEMPTS``: tries per request before the poll is skipped."""
    retry_budget_s: float = Field(default=20.0, gt=0)
    """``INGESTOR_RETRY_BUDGET_S``: total seconds a request may spend retrying."""
    retry_initial_s: float = Field(default=0.5, gt=0)
    """``INGESTOR_RETRY_INITIAL_S``: first back-off (doubles each try, plus jitter)."""
    retry_max_s: float = Field(default=8.0, gt=0)
    """``INGESTOR_RETRY_MAX_S``: longest single back-off."""
    metrics_port: int = 9101
    """``INGESTOR_METRICS_PORT``: Prometheus endpoint (0 disables)."""
