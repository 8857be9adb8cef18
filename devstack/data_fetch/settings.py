"""``volstream data fetch`` knobs: ``DATA_FETCH_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings

from services.common.settings import REPO_ROOT, component_config

PUBLIC_BASE_URL = "https://data.binance.vision"


class DataFetchSettings(BaseSettings):
    """Frozen, read once by the CLI and passed around."""

    model_config = component_config("DATA_FETCH_")

    base_url: str = PUBLIC_BASE_URL
    """``DATA_FETCH_BASE_URL``: the archive host (Binance's public data, or a mirror)."""
    dir: Path = REPO_ROOT / "data" / "binance"
    """``DATA_FETCH_DIR``: verified zips are cached under ``archive/`` here (so a re-run skips
    them), and the demo's two-year file is fetched here when ``../shared/data`` is absent."""
    timeout_s: float = Field(default=30.0, gt=0)
    """``DATA_FETCH_TIMEOUT_S``: connect/read timeout of each request."""
    attempts: int = Field(default=5, ge=1)
    """``DATA_FETCH_ATTEMPTS``: tries per file on timeouts, network errors and 5xx."""
    retry_initial_s: float = Field(default=1.0, ge=0)
    """``DATA_FETCH_RETRY_INITIAL_S``: first back-off (doubles each try, at most 30 s)."""

    @property
    def cache_dir(self) -> Path:
        return self.dir / "archive"
