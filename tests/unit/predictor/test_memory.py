"""What keeps the predictor's resident memory down (``docs/api.md``, Memory): no scikit-learn behind
xgboost, no ``river.drift`` behind ADWIN, predictions kept as compact JSON in the ring."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import xgboost as xgb

from services.common.schemas import Prediction
from services.common.settings import REPO_ROOT
from services.predictor.accuracy import Adwin
from services.predictor.ring import PredictionRing


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter at the repo root; returns its stdout."""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_booster_without_sklearn_predicts_the_same(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 8))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = np.nansum(x[:, :3], axis=1) + rng.normal(scale=0.1, size=500)
    booster = xgb.train({"max_depth": 3, "nthread": 1}, xgb.DMatrix(x, y), num_boost_round=20)
    booster.save_model(tmp_path / "model.ubj")
    np.save(tmp_path / "x.npy", x)
    code = f"""
import json, sys
import numpy as np
from services.predictor.__main__ import skip_unused_modules
skip_unused_modules()
import xgboost as xgb
b = xgb.Booster(model_file={str(tmp_path / "model.ubj")!r})
b.set_param({{"nthread": 1}})
p = b.inplace_predict(np.load({str(tmp_path / "x.npy")!r}))
heavy = [m for m in ("sklearn", "scipy.stats") if sys.modules.get(m) is not None]
print(json.dumps({{"pred": p.tolist(), "heavy": heavy}}))
"""
    out = json.loads(run_python(code))
    assert out["heavy"] == []
    np.testing.assert_array_equal(
        np.array(out["pred"], dtype=np.float32), booster.inplace_predict(x)
    )


def test_live_accuracy_does_not_import_river_drift() -> None:
    code = """
import sys
from services.predictor.accuracy import LiveAccuracy
LiveAccuracy()._adwin.update(1.0)
print(sorted(m for m in ("river.drift", "scipy.stats", "sqlalchemy") if m in sys.modules))
"""
    assert run_python(code).strip() == "[]"


def test_adwin_detects_what_river_adwin_detects() -> None:
    from river.drift import ADWIN

    rng = random.Random(11)
    stream = [rng.gauss(mu, 0.5) for mu in (0.0, 2.0, 0.5, 3.0, 3.0, -1.0) for _ in range(700)]
    ours, theirs = Adwin(), ADWIN()
    got, want = [], []
    for i, x in enumerate(stream):
        ours.update(x)
        theirs.update(x)
        got += [i] if ours.drift_detected else []
        want += [i] if theirs.drift_detected else []
    assert len(want) >= 4 and got == want


def test_ring_keeps_predictions_compact() -> None:
    now = time.time()
    preds = [
        Prediction(
            symbol="BTC",
            time=1_700_000_000 + 60 * i,
            rv=0.012345,
            log_rv=-4.394,
            model_name="volstream-rv60",
            model_version="12",
            role="champion",
            feature_version="fs-2",
            ingested_at=now,
            features_emitted_at=now,
            emitted_at=now,
        )
        for i in range(2000)
    ]
    encoded = [p.to_bytes() for p in preds]  # as the stream worker hands them over
    tracemalloc.start()
    try:
        ring = PredictionRing(size=2000)
        ring.extend(preds, encoded)
        per_item, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert per_item / len(preds) < 700  # a Prediction object is ~1.4 kB, orjson's bytes ~4 kB
    assert ring.query_json("BTC", limit=3) == encoded[-3:]
    assert ring.query("BTC", since=preds[5].time, limit=2) == preds[5:7]
    assert ring.latest("BTC") == preds[-1]


def test_a_batch_of_encoded_predictions_is_held_at_its_size(
    calm_features, bundle, to_vectors
) -> None:
    """A micro-batch's encoded predictions wait in the backlog until the next fold (and in the
    producer's queue): each must hold its own bytes, not orjson's whole write buffer (8 kB)."""
    from services.predictor.core import encode_predictions, feature_matrix, score

    vecs = to_vectors(calm_features[calm_features["warm"]].iloc[-500:])
    log_rv = score(bundle, feature_matrix([v.features for v in vecs], bundle.feature_names))
    tracemalloc.start()
    try:
        preds, encoded = encode_predictions(vecs, log_rv, bundle, "champion", 60)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = sum(len(b) for b in encoded)
    assert encoded == [p.to_bytes() for p in preds] and size / len(vecs) < 600
    assert held / len(vecs) < 4096  # its bytes (~0.4 kB), message and dict; not 8 kB more
