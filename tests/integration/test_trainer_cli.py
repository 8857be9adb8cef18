"""``volstream train`` then ``volstream evaluate --json`` as subprocesses, on real candles, with a
real MLflow server, a real broker (ModelEvents) and a real DVC repository and remote."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

from services.common import kafka
from services.common.schemas import ModelEvent
from services.common.settings import Settings
from services.common.topics import MODEL_EVENTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DVC = str(Path(sys.executable).with_name("dvc"))
VOLSTREAM = str(Path(sys.executable).with_name("volstream"))


def day(s: str) -> int:
    return int(pd.Timestamp(s, tz="UTC").timestamp())


def slice_to(src: Path, dst: Path, start: str, end: str) -> Path:
    df = pd.read_parquet(src)
    df[(df["time"] >= day(start)) & (df["time"] < day(end))].to_parquet(dst, index=False)
    return dst


def run(
    args: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([VOLSTREAM, *args], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode in ok, proc.stderr[-3000:]
    return proc


async def read_events(settings: Settings) -> list[ModelEvent]:
    consumer = kafka.make_consumer(MODEL_EVENTS, group_id=None, settings=settings)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
        return [ModelEvent.from_bytes(r.value) for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()


def test_train_then_evaluate_a_later_period(
    mlflow_server, shared_data, service_env, settings, tmp_path
):
    train_file = slice_to(
        shared_data / "btcusdt_1m_2023-2024.parquet", tmp_path / "train.parquet",
        "2024-07-01", "2024-10-01",
    )  # fmt: skip
    later_file = slice_to(
        shared_data / "btcusdt_1m_2023-2024.parquet", tmp_path / "later.parquet",
        "2024-10-01", "2024-11-15",
    )  # fmt: skip
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=repo, check=True)
    model_name = f"cli-{uuid.uuid4().hex[:8]}"
    env = service_env | {
        "MLFLOW_TRACKING_URI": mlflow_server.uri,
        "MODEL_NAME": model_name,
        "TRAINER_XGB_THREADS": "1",
        "TRAINER_XGB_ETA": "0.06",
        "TRAINER_TRAIN_STEP_MINUTES": "60",
        "TRAINER_DATASETS_DIR": str(repo / "data" / "datasets"),
        "TRAINER_DVC_REMOTE": str(tmp_path / "remote"),
    }

    # the gate decides on the window after training (test split + held-out days): exit 0 when it
    # promoted, 3 when it refused (a quarter of training need not beat the seasonal HAR)
    trained = run(["train", "--data", str(train_file), "--json"], env, ok=(0, 3))
    out = json.loads(trained.stdout)
    decision = "promoted" if out["decision"]["promoted"] else "refused"
    assert out["version"] == "1" and trained.returncode == (0 if decision == "promoted" else 3)
    assert out["decision"]["window"]["n"] >= 168 and out["decision"]["qlike"]["har_seasonal"] > 0
    dvc_files = list((repo / "data" / "datasets").glob("*.parquet.dvc"))
    assert len(dvc_files) == 1
    md5 = dvc_files[0].read_text().split("md5: ")[1].split()[0]
    assert (tmp_path / "remote" / "files" / "md5" / md5[:2] / md5[2:]).exists()

    evaluated = run(["evaluate", "--data", str(later_file), "--model", "1", "--json"], env)
    lines = evaluated.stdout.strip().splitlines()
    assert len(lines) == 1  # exactly one JSON object, logs on stderr
    report = json.loads(lines[0])
    assert list(report)[:6] == ["n", "model", "persistence", "ewma", "har", "har_seasonal"]
    assert report["n"] > 24 * 30  # 45 days minus the 7-day warm-up, hourly
    for name in ("model", "persistence", "ewma", "har", "har_seasonal"):
        assert set(report[name]) == {"qlike", "rmse", "mae", "r2"}
        assert report[name]["qlike"] > 0 and report[name]["rmse"] > 0
    assert report["model"]["qlike"] < report["persistence"]["qlike"]
    assert set(report["dm"]) == {"persistence", "ewma", "har", "har_seasonal"}
    interval = report["interval"]
    assert interval["level"] == 0.8 and interval["mean_log_width"] > 0
    assert set(interval["by_regime"]) == {"calm", "normal", "turbulent"}
    assert 0.5 < interval["coverage"] < 1.0  # a 6-week window: calibrated, not exact
    assert report["version"] == "1"

    events = asyncio.run(read_events(settings))
    assert [(e.event, e.version) for e in events] == [("registered", "1"), (decision, "1")]
    assert all(e.model_name == model_name for e in events)
