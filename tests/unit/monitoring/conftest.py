"""Fixtures for the monitoring unit tests: the Prometheus tools, skipped with the fix if absent."""

from __future__ import annotations

import shutil

import pytest


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed: run `make monitoring-setup`")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return _tool("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return _tool("amtool")
