"""Structured logs: one JSON object per line on stderr.

Pass context as ``extra``; the fields that matter here are ``symbol``, ``candle_time``,
``topic``, ``partition``, ``offset`` and ``key``::

    log.info("published", extra={"symbol": "BTC", "candle_time": 1700000000, "offset": 42})
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with its ``extra`` fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure_logging(level: str = "INFO", service: str | None = None) -> None:
    """Route the root logger to stderr as JSON lines (idempotent)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    for noisy in ("aiokafka", "kafka", "urllib3", "httpx", "alembic", "mode", "faust"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    if service:
        logging.LoggerAdapter(root, {"service": service})
    logging.Formatter.converter = time.gmtime
