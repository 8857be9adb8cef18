"""Models are stored and loaded as data (issue #17.5), against the real MLflow server.

A version is XGBoost's own UBJ bytes plus their SHA-256 in the version's tags. The predictor's
loader checks the hash and never imports anything a version names: a version whose ``MLmodel``
points at a loader module is refused and the module's side effect (a marker file) never happens,
while MLflow's own pyfunc loader, run on the same version as a control, does write the marker.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from services.common import registry
from services.common.errors import ModelIntegrityError
from services.common.features import FEATURE_NAMES, FEATURE_VERSION, featurize_many
from services.common.settings import Settings
from services.predictor.metrics import PredictorMetrics
from services.predictor.models import MlflowRegistry, ModelHolder
from trainer.targets import log_rv_target, minute_grid

pytestmark = pytest.mark.integration
LOADER = "volstream_marker_loader"


@pytest.fixture(scope="module")
def rows(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """Warm feature rows and their log-RV targets from nine real days of 2023."""
    t0 = int(pd.Timestamp("2023-08-01", tz="UTC").timestamp())
    df = pd.read_parquet(
        shared_data / "btcusdt_1m_2023-2024.parquet",
        filters=[("time", ">=", t0), ("time", "<", t0 + 9 * 86400)],
    )
    feats = featurize_many(df, at=df["time"][df["time"] % 600 == 0].tolist())
    feats = feats[feats["warm"]].reset_index(drop=True)
    y = log_rv_target(minute_grid(df), feats["time"].to_numpy())
    ok = np.isfinite(y)
    return feats.loc[ok, list(FEATURE_NAMES)].to_numpy(dtype=np.float64), y[ok]


def booster(rows: tuple[np.ndarray, np.ndarray], trees: int) -> xgb.Booster:
    x, y = rows
    params = {"max_depth": 3, "eta": 0.1, "nthread": 1, "objective": "reg:squarederror"}
    return xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=trees)


def register(b: xgb.Booster, settings: Settings) -> str:
    bundle = registry.ModelBundle(
        booster=b,
        name=settings.model_name,
        version="",
        run_id="",
        feature_names=list(FEATURE_NAMES),
        feature_version=FEATURE_VERSION,
        bias_factor=1.3,
        reference={},
        feature_ranges={},
        metrics={"test_qlike": 0.2},
        trained_at=time.time(),
        trained_until=1_690_000_000,
    )
    registry._use_server(settings)
    mlflow.set_experiment(f"storage-{settings.model_name}")
    with mlflow.start_run():
        return registry.log_bundle(bundle, settings)


@pytest.fixture()
def model_settings(mlflow_server) -> Settings:
    return Settings(
        mlflow_tracking_uri=mlflow_server.uri,
        model_name=f"storage-{uuid.uuid4().hex[:8]}",
        kafka_bootstrap_servers="127.0.0.1:1",
    )


def test_a_registered_booster_loads_as_data_and_an_altered_one_is_refused(
    rows, model_settings, tmp_path
) -> None:
    original = booster(rows, 20)
    version = register(original, model_settings)
    mv = registry.client(model_settings).get_model_version(model_settings.model_name, version)
    assert mv.tags[registry.FORMAT_TAG] == "xgboost-ubj"
    assert mv.tags[registry.SHA256_TAG] == registry.sha256(bytes(original.save_raw("ubj")))
    assert mv.tags[registry.TRAINED_UNTIL_TAG] == "1690000000"
    names = {a.path for a in registry.client(model_settings).list_artifacts(mv.run_id, "bundle")}
    assert names == {"bundle/booster.ubj", "bundle/bundle.json"}  # no MLmodel, no code

    loaded = registry.load_bundle(version, model_settings)
    x = rows[0][:50]
    np.testing.assert_array_equal(loaded.predict_log_rv(x), original.inplace_predict(x))
    assert loaded.trained_until == 1_690_000_000

    # the predictor serves it; then the artifact is swapped for another model's bytes
    holder = ModelHolder(MlflowRegistry(model_settings), PredictorMetrics())
    registry.set_alias("champion", version, model_settings)
    assert asyncio.run(holder.reload())
    other = tmp_path / "booster.ubj"
    other.write_bytes(bytes(booster(rows, 3).save_raw("ubj")))
    registry.client(model_settings).log_artifact(mv.run_id, str(other), "bundle")
    with pytest.raises(ModelIntegrityError, match="does not match its registered hash"):
        registry.load_bundle(version, model_settings)
    assert not asyncio.run(holder.reload(force=True))
    assert holder.models.champion is not None
    assert holder.models.champion.bundle.version == version  # the old model keeps serving
    assert "does not match its registered hash" in (holder.last_error or "")
    assert holder.metrics.registry.get_sample_value("model_reload_failures_total") == 1


LOADER_CODE = """
import os
from pathlib import Path

Path(os.environ["VOLSTREAM_MARKER"]).write_text("imported")


def _load_pyfunc(path):
    return None
"""


def test_the_predictor_never_imports_code_named_by_a_model_version(
    rows, model_settings, tmp_path, monkeypatch
) -> None:
    marker = tmp_path / "marker"
    monkeypatch.setenv("VOLSTREAM_MARKER", str(marker))
    code = tmp_path / f"{LOADER}.py"
    code.write_text(textwrap.dedent(LOADER_CODE))
    data = tmp_path / "data.txt"
    data.write_text("x")

    good = register(booster(rows, 5), model_settings)
    registry._use_server(model_settings)
    mlflow.set_experiment(f"storage-{model_settings.model_name}")
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(
            name="model", loader_module=LOADER, code_paths=[str(code)], data_path=str(data)
        )
    c = registry.client(model_settings)
    # the hostile version even claims to be a volstream booster
    evil = c.create_model_version(
        model_settings.model_name,
        info.model_uri,
        run_id=run.info.run_id,
        model_id=info.model_id,
        tags={registry.FORMAT_TAG: registry.BOOSTER_FORMAT, registry.SHA256_TAG: "0" * 64},
    ).version

    holder = ModelHolder(MlflowRegistry(model_settings), PredictorMetrics())
    registry.set_alias("champion", good, model_settings)
    assert asyncio.run(holder.reload())
    registry.set_alias("champion", evil, model_settings)
    assert not asyncio.run(holder.reload())
    assert holder.models.champion.bundle.version == good
    assert holder.last_error and f"v{evil}" in holder.last_error
    assert holder.metrics.registry.get_sample_value("model_reload_failures_total") == 1
    assert not marker.exists() and LOADER not in sys.modules

    # control: MLflow's own loader on the same version runs the module (the trap is armed)
    probe = (
        "import mlflow, sys\n"
        f"mlflow.set_tracking_uri({model_settings.mlflow_tracking_uri!r})\n"
        f"mlflow.pyfunc.load_model('models:/{model_settings.model_name}/{evil}')\n"
    )
    env = os.environ | {"VOLSTREAM_MARKER": str(marker)}
    proc = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300
    )
    assert marker.exists(), proc.stderr[-2000:]


#: Loaded by ``import mlflow`` (any ``mlflow.*`` module): ~100 MB the predictor does not need.
HEAVY = ("mlflow", "pandas", "pyarrow", "sqlalchemy", "sklearn")
LEAN_PROBE = """
import asyncio, json, sys
from services.predictor.__main__ import skip_unused_modules
skip_unused_modules()
from services.common.settings import get_settings
from services.predictor.app import build_service
from services.predictor.settings import PredictorSettings
service = build_service(get_settings(), PredictorSettings())
ok = asyncio.run(service.holder.reload())
champion = service.holder.models.champion
print(json.dumps({
    "ok": ok,
    "version": champion.bundle.version if champion else None,
    "features": len(champion.bundle.feature_names) if champion else 0,
    "error": service.holder.last_error,
    "heavy": sorted(m for m in HEAVY if sys.modules.get(m) is not None),
}))
"""


def test_the_predictor_loads_its_champion_without_importing_mlflow_or_pandas(
    rows, model_settings, tmp_path
) -> None:
    """The serving process reads the registry over MLflow's REST API (``docs/api.md``, Memory):
    a real champion loads from the real server, and neither the MLflow package nor pandas is
    imported on the way."""
    version = register(booster(rows, 5), model_settings)
    registry.set_alias("champion", version, model_settings)
    env = os.environ | {
        "MLFLOW_TRACKING_URI": model_settings.mlflow_tracking_uri,
        "MODEL_NAME": model_settings.model_name,
        "VAR_DIR": str(tmp_path / "var"),
    }
    code = f"HEAVY = {HEAVY!r}\n" + LEAN_PROBE
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ok"] and out["version"] == version, out
    assert out["features"] == len(FEATURE_NAMES)
    assert out["heavy"] == [], out
