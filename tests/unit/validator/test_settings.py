"""The validator's knobs come from the environment."""

from __future__ import annotations

import pytest

from services.validator.core import Rules
from services.validator.settings import ValidatorSettings


def test_defaults_are_the_documented_gate() -> None:
    s = ValidatorSettings()
    assert s.rules() == Rules() and s.group_id == "validator"


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VALIDATOR_METRICS_PORT", "0")
    monkeypatch.setenv("VALIDATOR_RECORD_POLICY", "drop")
    monkeypatch.setenv("VALIDATOR_MAX_INVALID_FRACTION", "0.05")
    monkeypatch.setenv("VALIDATOR_MAX_LOG_RETURN", "0.3")
    s = ValidatorSettings()
    assert s.metrics_port == 0
    assert s.rules() == Rules(max_invalid_fraction=0.05, max_log_return=0.3, policy="drop")


def test_a_wrong_policy_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VALIDATOR_RECORD_POLICY", "ignore")
    with pytest.raises(ValueError, match="record_policy"):
        ValidatorSettings()
