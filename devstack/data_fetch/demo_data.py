"""Where the demo's real history comes from: ``../shared/data``, or the same file fetched locally.

``make run`` (and ``volstream up --demo``) need one file, ``btcusdt_1m_2023-2024.parquet`` in the
shared layout: two years of Binance BTCUSDT minute candles to train on, whose last week warms the
features up and whose last days feed the stream. Beside this repository it is ``../shared/data``;
anywhere else ``volstream data fetch`` rebuilds the very same file from Binance's public archives
into ``DATA_FETCH_DIR`` (``data/binance``), and the demo reads it from there.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

DEMO_FILE = "btcusdt_1m_2023-2024.parquet"
DEMO_PAIR, DEMO_FROM, DEMO_TO = "BTCUSDT", "2023-01", "2024-12"
#: ``VOLSTREAM_FETCH=1 make run`` fetches the demo's data when it is missing, instead of asking.
FETCH_ENV = "VOLSTREAM_FETCH"


def locate(shared_dir: Path, fetch_dir: Path) -> Path | None:
    """The directory holding the demo file: the shared one first, then the fetched one."""
    for directory in (shared_dir, fetch_dir):
        if (directory / DEMO_FILE).is_file():
            return directory
    return None


def fetch_args(fetch_dir: Path, base_url: str | None = None) -> list[str]:
    """The ``volstream data fetch`` arguments that rebuild the demo file in ``fetch_dir``."""
    args = ["--source", "binance", "--symbol", DEMO_PAIR, "--from", DEMO_FROM, "--to", DEMO_TO]
    if base_url:
        args += ["--base-url", base_url]
    return [*args, "--output", _shown(fetch_dir / DEMO_FILE)]


def missing_message(shared_dir: Path, fetch_dir: Path) -> str:
    """One message: what is missing, the command that fetches it, and the one-step alternative."""
    cmd = shlex.join([".venv/bin/volstream", "data", "fetch", *fetch_args(fetch_dir)])
    return (
        f"No market data for the demo: {DEMO_FILE} is neither in {_shown(shared_dir)}"
        f" (SHARED_DATA_DIR) nor in {_shown(fetch_dir)} (DATA_FETCH_DIR). Fetch Binance's public"
        f" BTCUSDT minute candles for {DEMO_FROM}..{DEMO_TO} (24 checksummed monthly archives,"
        f" roughly 50 MB) with:\n    {cmd}\nthen `make run` again, or fetch and run in one go with:"
        f"\n    {FETCH_ENV}=1 make run"
    )


def fetch_wanted() -> bool:
    return os.environ.get(FETCH_ENV, "").strip().lower() in ("1", "true", "yes")


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is under it (shorter messages)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
