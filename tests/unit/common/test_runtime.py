"""Process-level settings of the stream services (services/common/runtime.py)."""

from __future__ import annotations

import ast
import gc
import importlib
import inspect

import pytest

from services.common.runtime import GC_GEN0_THRESHOLD, tune_gc


def test_tune_gc_freezes_the_start_up_heap_and_collects_young_objects_less_often() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.parametrize("service", ["validator", "featurizer", "predictor"])
def test_every_stream_service_tunes_its_collector_in_its_wiring(service: str) -> None:
    module = importlib.import_module(f"services.{service}.__main__")
    calls = {
        node.func.id
        for node in ast.walk(ast.parse(inspect.getsource(module)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert "tune_gc" in calls
    assert module.tune_gc is tune_gc
