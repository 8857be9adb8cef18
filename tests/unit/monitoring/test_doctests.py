"""Run the doctests of every ``monitoring`` module (pytest's doctest collection covers
``services`` and ``trainer`` only)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import monitoring

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(monitoring.__path__, "monitoring.")
    if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
