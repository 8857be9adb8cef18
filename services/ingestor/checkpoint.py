"""Durable per-symbol checkpoints: the time of the last candle the broker acknowledged.

One small JSON file per symbol (and per stream: ``live`` is shared by live polling and backfill,
``replay`` is separate) under ``DATA_DIR/checkpoints/ingestor/``, replaced atomically (write a
temporary file, fsync, rename, fsync the directory), so a kill -9 leaves the old or the new value,
never a torn one.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from services.common.errors import ConfigError


class CheckpointStore:
    """Reads and atomically writes ``<dir>/<stream>-<symbol>.json``."""

    def __init__(self, directory: Path, stream: str = "live") -> None:
        self.directory = directory
        self.stream = stream

    @classmethod
    def under(cls, data_dir: Path, stream: str = "live") -> CheckpointStore:
        """The store under ``DATA_DIR``."""
        return cls(data_dir / "checkpoints" / "ingestor", stream)

    def path(self, symbol: str) -> Path:
        return self.directory / f"{self.stream}-{symbol}.json"

    def load(self, symbol: str) -> int | None:
        """The last acknowledged candle time of ``symbol``, or None before the first batch."""
        path = self.path(symbol)
        if not path.exists():
            return None
        try:
            doc = orjson.loads(path.read_bytes())
            return int(doc["time"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"unreadable checkpoint {path}: {exc}") from exc

    def save(self, symbol: str, time: int) -> None:
        """Durably replace the checkpoint of ``symbol`` (call only after the broker acked)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(symbol)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps({"symbol": symbol, "time": time}))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def forget(self, symbol: str) -> None:
        """Drop the checkpoint of ``symbol`` (its log is gone: the next start warms up anew)."""
        self.path(symbol).unlink(missing_ok=True)
