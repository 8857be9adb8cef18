"""The local stack supervisor: ``volstream up``, ``down`` and ``status`` (being written)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Adds up/down/status (next commit)."""
