"""Fixtures for the monitoring unit tests: the Prometheus tools (required when ``CI`` is set)."""

from __future__ import annotations

import pytest

from tests.tools import require_tool as _tool


@pytest.fixture(scope="session")
def promtool() -> str:
    return _tool("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return _tool("amtool")
