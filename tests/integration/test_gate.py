"""``volstream gate`` fails closed (issue #17), as a subprocess against the real MLflow server, a
real broker (``model.events``) and models trained on the shared two-year BTCUSDT file.

Two models are trained once per module: a champion on the whole two-year file and a challenger on
its last 60 days. Each test registers copies of them under its own model name (same run, same
artifacts and hash tags), or re-logs a bundle into a new run when it needs to change one.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from devstack.broker import free_port
from devstack.mlflow_local import MlflowServer
from services.common import kafka, registry
from services.common.schemas import ModelEvent
from services.common.settings import Settings
from services.common.topics import MODEL_EVENTS
from trainer.settings import TrainerSettings
from trainer.tracking import BASELINES_FILE
from trainer.train import train_and_register

pytestmark = [pytest.mark.integration, pytest.mark.slow]
VOLSTREAM = str(Path(sys.executable).with_name("volstream"))
DAY = 86400


@dataclass(frozen=True)
class Trained:
    settings: Settings  # the model name both were registered under first
    champion: str  # version trained on the two-year file
    challenger: str  # version trained on its last 60 days
    two_year: Path
    last60: Path


@pytest.fixture(scope="module")
def trained(mlflow_server, shared_data, tmp_path_factory) -> Trained:
    tmp = tmp_path_factory.mktemp("gate")
    s = Settings(
        mlflow_tracking_uri=mlflow_server.uri,
        model_name=f"gate-src-{uuid.uuid4().hex[:8]}",
        kafka_bootstrap_servers="127.0.0.1:1",
    )
    ts = TrainerSettings(dvc_enabled=False, datasets_dir=tmp, train_step_minutes=60, xgb_threads=1)
    two_year = shared_data / "btcusdt_1m_2023-2024.parquet"
    full = pd.read_parquet(two_year)
    champion = train_and_register(full, s, ts, promote=False, source=two_year)
    last60 = tmp / "last60.parquet"
    full[full["time"] >= full["time"].max() - 60 * DAY].to_parquet(last60, index=False)
    challenger = train_and_register(pd.read_parquet(last60), s, ts, promote=False, source=last60)
    return Trained(s, champion["version"], challenger["version"], two_year, last60)


def model(t: Trained) -> Settings:
    return t.settings.model_copy(update={"model_name": f"gate-{uuid.uuid4().hex[:8]}"})


def adopt(t: Trained, version: str, dst: Settings, alias: str) -> str:
    """Register ``version`` of the source model under ``dst`` (same run, same tags)."""
    c = registry.client(t.settings)
    mv = c.get_model_version(t.settings.model_name, version)
    new = registry.register_version(mv.run_id, dict(mv.tags), dst)
    registry.set_alias(alias, new, dst)
    return new


def relog(t: Trained, version: str, dst: Settings, alias: str, **changes: object) -> str:
    """Log ``version``'s bundle (with ``changes``) into a new run, registered under ``dst``."""
    bundle = replace(registry.load_bundle(version, t.settings), **changes)
    baselines = registry.read_run_json(bundle.run_id, BASELINES_FILE, t.settings)
    source = registry.client(t.settings).get_run(bundle.run_id).data.tags["data.candles"]
    registry._use_server(dst)
    mlflow.set_experiment(f"gate-{dst.model_name}")
    with mlflow.start_run() as run:
        mlflow.set_tag("data.candles", source)
        new = registry.log_bundle(bundle, dst, files={BASELINES_FILE: baselines})
    registry.set_alias(alias, new, dst)
    assert registry.version_run(new, dst)[1] == run.info.run_id
    return new


def volstream(args: list[str], s: Settings, env: dict[str, str], **extra: str):
    env = env | {
        "MLFLOW_TRACKING_URI": s.mlflow_tracking_uri,
        "MODEL_NAME": s.model_name,
        "TRAINER_XGB_THREADS": "1",
    }
    return subprocess.run(
        [VOLSTREAM, *args], env=env | extra, capture_output=True, text=True, timeout=600
    )


def doc(proc: subprocess.CompletedProcess[str]) -> dict:
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(lines[0])


def events(bootstrap: Settings, model_name: str) -> list[ModelEvent]:
    async def read() -> list[ModelEvent]:
        consumer = kafka.make_consumer(MODEL_EVENTS, group_id=None, settings=bootstrap)
        await consumer.start()
        got: list[ModelEvent] = []
        try:
            for _ in range(10):
                batch = await consumer.getmany(timeout_ms=1500)
                if not batch and got:
                    break
                got += [ModelEvent.from_bytes(r.value) for rs in batch.values() for r in rs]
        finally:
            await consumer.stop()
        return [e for e in got if e.model_name == model_name]

    return asyncio.run(read())


def test_a_challenger_trained_on_the_last_60_days_is_refused(trained, settings, service_env):
    s = model(trained)
    champ = adopt(trained, trained.champion, s, "champion")
    chal = adopt(trained, trained.challenger, s, "challenger")
    proc = volstream(["gate", "--json"], s, service_env)  # candles: the challenger's own file
    assert proc.returncode == 3, proc.stderr[-3000:]
    out = doc(proc)
    assert not out["promoted"] and out["champion_comparable"] is True
    assert out["qlike"]["model"] > out["qlike"]["champion"], out["reason"]
    assert "does not beat champion" in out["reason"]
    # the window starts after both models' training data and is long enough
    assert out["window"]["start"] >= registry.load_bundle(chal, s).trained_until
    assert out["window"]["n"] >= 168
    assert set(out["report"]["dm"]) >= {"har", "har_seasonal", "champion"}
    assert registry.alias_version("champion", s) == champ
    tags = registry.client(s).get_model_version(s.model_name, chal).tags
    assert tags["gate.decision"] == "refused"
    (event,) = events(settings, s.model_name)
    assert (event.event, event.version, event.forced) == ("refused", chal, False)
    assert event.metrics["challenger_qlike"] == pytest.approx(out["qlike"]["model"])
    assert event.metrics["champion_qlike"] == pytest.approx(out["qlike"]["champion"])
    assert "dm_har_seasonal_stat" in event.metrics


def test_a_champion_whose_artifact_changed_refuses_the_gate(trained, tmp_path, service_env):
    s = model(trained)
    champ = relog(trained, trained.champion, s, "champion")
    adopt(trained, trained.challenger, s, "challenger")
    run_id = registry.version_run(champ, s)[1]
    other = registry.load_bundle(trained.challenger, trained.settings).booster
    (tmp_path / "booster.ubj").write_bytes(bytes(other.save_raw("ubj")))
    registry.client(s).log_artifact(run_id, str(tmp_path / "booster.ubj"), "bundle")
    proc = volstream(["gate"], s, service_env)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "does not match its registered hash" in proc.stdout
    assert f"champion v{champ} cannot be loaded" in proc.stderr
    assert registry.alias_version("champion", s) == champ


def test_with_mlflow_stopped_the_gate_refuses_within_a_minute(
    trained, tmp_path, settings, service_env
):
    server = MlflowServer(tmp_path / "mlflow", port=free_port())
    server.start()
    s = model(trained).model_copy(update={"mlflow_tracking_uri": server.uri})
    try:
        chal = relog(trained, trained.challenger, s, "challenger")
    finally:
        server.stop()
    proc = volstream(["gate", "--data", str(trained.last60)], s, service_env)
    logs = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith('{"ts"')]
    ts = {r["msg"]: r["ts"] for r in logs if r["logger"] == "trainer.gate"}
    # the gate's own time (interpreter start-up on a loaded machine is not the gate's)
    assert proc.returncode == 3 and ts["gate decision"] - ts["gate started"] < 60, proc.stderr[
        -3000:
    ]
    assert f"MLflow unreachable at {server.uri}" in proc.stdout + proc.stderr
    (event,) = events(settings, s.model_name)
    assert event.event == "refused" and "MLflow unreachable" in event.reason
    server.start()  # same store: nothing was promoted
    try:
        assert registry.alias_version("champion", s) is None
        assert registry.alias_version("challenger", s) == chal
    finally:
        server.stop()


def test_new_features_need_the_larger_margin_or_a_forced_promotion(trained, settings, service_env):
    s = model(trained)
    old = relog(trained, trained.champion, s, "champion", feature_version="fs-previous")
    new = adopt(trained, trained.champion, s, "challenger")  # the same model, current features
    probe = doc(
        volstream(["gate", "--json"], s, service_env, TRAINER_GATE_MARGIN_NEW_FEATURES="0.9")
    )
    gain = 1.0 - probe["qlike"]["model"] / probe["qlike"]["har_seasonal"]
    assert probe["champion_comparable"] is False and "champion" not in probe["qlike"]
    assert gain > 0.02, probe["qlike"]  # the model beats the seasonal HAR on its window
    assert registry.alias_version("champion", s) == old

    above = {"TRAINER_GATE_MARGIN_NEW_FEATURES": f"{gain + 0.01:.4f}"}
    refused = volstream(["gate", "--json"], s, service_env, **above)
    assert refused.returncode == 3
    reason = doc(refused)["reason"]
    assert "does not beat har_seasonal by" in reason and f"champion v{old} not comparable" in reason
    assert registry.alias_version("champion", s) == old

    no_why = volstream(["promote", "--force"], s, service_env)
    assert no_why.returncode == 2 and "--why" in no_why.stderr
    forced = volstream(
        ["promote", "--force", "--why", "new features reviewed", "--json"], s, service_env, **above
    )
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert doc(forced)["forced"] and registry.alias_version("champion", s) == new

    registry.set_alias("champion", old, s)
    below = {"TRAINER_GATE_MARGIN_NEW_FEATURES": f"{gain - 0.01:.4f}"}
    promoted = volstream(["gate", "--json"], s, service_env, **below)
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    assert registry.alias_version("champion", s) == new

    got = [(e.event, e.forced) for e in events(settings, s.model_name)]
    assert got == [("refused", False), ("refused", False), ("promoted", True), ("promoted", False)]
    forced_event = next(e for e in events(settings, s.model_name) if e.forced)
    assert "new features reviewed" in forced_event.reason
    tags = registry.client(s).get_model_version(s.model_name, new).tags
    assert tags["gate.forced"] == "false" and tags["gate.decision"] == "promoted"
