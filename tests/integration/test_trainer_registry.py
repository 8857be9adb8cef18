"""Train, register, load and gate against a real MLflow server, on real candles."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.common import registry
from services.common.errors import ModelError
from services.common.settings import Settings
from trainer import gate
from trainer.settings import TrainerSettings
from trainer.train import train_and_register

pytestmark = pytest.mark.integration

THREE_MONTHS = 92 * 86400


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> pd.DataFrame:
    """The last three months of 2024 (Q4): enough for train/valid/test by fractions."""
    df = pd.read_parquet(shared_data / "btcusdt_1m_2023-2024.parquet")
    return df[df["time"] >= df["time"].max() - THREE_MONTHS].reset_index(drop=True)


def make_settings(uri: str) -> Settings:
    """A fresh model name per test, no broker (events are best effort)."""
    return Settings(
        mlflow_tracking_uri=uri,
        model_name=f"test-{uuid.uuid4().hex[:8]}",
        kafka_bootstrap_servers="127.0.0.1:1",
    )


def trainer_settings(tmp_path: Path, **kw: object) -> TrainerSettings:
    base = {
        "dvc_enabled": False,
        "datasets_dir": tmp_path,
        "xgb_rounds": 400,
        "xgb_eta": 0.06,
        "train_step_minutes": 60,
        "xgb_threads": 1,
    }
    return TrainerSettings(**(base | kw))


@pytest.mark.slow
def test_train_registers_loads_and_gates(mlflow_server, candles, tmp_path):
    settings = make_settings(mlflow_server.uri)
    assert registry.alias_version("champion", settings) is None
    with pytest.raises(ModelError):
        registry.load_bundle("champion", settings)

    # A deliberately weak model (2 stumps) becomes champion only by force.
    weak = trainer_settings(tmp_path, xgb_rounds=2, xgb_max_depth=1, xgb_early_stopping=1)
    first = train_and_register(candles, settings, weak, promote=False)
    assert registry.alias_version("challenger", settings) == first["version"]
    assert registry.alias_version("champion", settings) is None
    forced = gate.run(settings, weak, lambda: candles, force=True, why="bootstrap")
    assert forced.promoted and forced.forced and forced.why == "bootstrap"
    assert registry.alias_version("champion", settings) == first["version"]

    # A real model beats that champion and both HARs on the window after both trainings.
    good = train_and_register(candles, settings, trainer_settings(tmp_path))
    decision = good["decision"]
    assert decision.champion == first["version"] and decision.champion_comparable
    assert decision.qlike["model"] < decision.qlike["champion"]
    assert decision.promoted and not decision.forced, decision.reason
    assert registry.alias_version("champion", settings) == good["version"]

    # The weak one again: refused, the champion stays.
    again = train_and_register(candles, settings, weak)
    assert not again["decision"].promoted
    assert registry.alias_version("champion", settings) == good["version"]
    assert registry.alias_version("challenger", settings) == again["version"]
    tags = registry.client(settings).get_model_version(settings.model_name, again["version"]).tags
    assert tags["gate.decision"] == "refused"

    bundle = registry.load_bundle("champion", settings)
    assert bundle.version == good["version"]
    assert bundle.metrics["test_qlike"] == pytest.approx(good["report"]["model"]["qlike"])
    assert set(bundle.reference) <= set(bundle.feature_names)
    assert bundle.bias_factor > 0
    x = np.full((3, len(bundle.feature_names)), np.nan)
    x[:, bundle.feature_names.index("lrv_60m")] = np.log(0.004)
    assert np.isfinite(bundle.predict_log_rv(x)).all()
    assert registry.load_bundle(first["version"], settings).version == first["version"]


def test_gate_refuses_a_worse_challenger_and_promotes_a_better_one():
    margins = {"champion": 0.0, "har": 0.0, "har_seasonal": 0.0}
    q = {"model": 0.17, "champion": 0.18, "har": 0.25, "har_seasonal": 0.2}
    assert gate.decide(q, margins)[0]
    assert not gate.decide(q | {"model": 0.19}, margins)[0]
    assert not gate.decide(q | {"model": 0.21}, margins | {"champion": 0.1})[0]
    assert not gate.decide(q, margins | {"har_seasonal": 0.2})[0]
    no_champion = {k: v for k, v in q.items() if k != "champion"}
    assert gate.decide(no_champion | {"model": 0.185}, margins)[0]
