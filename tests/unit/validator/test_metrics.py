"""The validator's counters that recording rules divide by exist at 0 before the first record."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.validator.metrics import PRESET_SERIES, ValidatorMetrics


def test_rule_inputs_are_exported_at_zero_on_a_fresh_validator() -> None:
    registry = CollectorRegistry()
    ValidatorMetrics(registry)
    for outcome, reason in PRESET_SERIES:
        labels = {"outcome": outcome, "reason": reason}
        assert registry.get_sample_value("validator_records_total", labels) == 0.0
    revised = {"outcome": "dead_letter", "reason": "revised"}
    assert ("dead_letter", "revised") in PRESET_SERIES  # CandleRevisionsHigh reads this one
    assert registry.get_sample_value("validator_records_total", revised) == 0.0
