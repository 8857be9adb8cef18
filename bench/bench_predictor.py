"""Predictor benchmark: REST latency and throughput at concurrency 32 against a bare FastAPI
endpoint on the same machine, and XGBoost scoring per row, single row vs micro-batch.

Each server runs alone in its own process (one uvicorn worker, uvloop + httptools, no access
log), loaded by ``wrk`` (Debian's, installed if missing). The predictor serves HTTP only (no
Kafka loops) with a real model fitted by the trainer on 60 days of real candles and a ring
filled with real predictions. Figures are printed against the targets, never asserted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import figure, save
from devstack.broker import free_port
from devstack.procs import stop_process_group

CONCURRENCY = 32
DURATION_S = 8


def ensure_wrk() -> str:
    """wrk, from Debian if it is missing."""
    path = shutil.which("wrk")
    if path is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        path = shutil.which("wrk")
    if path is None:
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
        path = shutil.which("wrk")
    assert path, "wrk could not be installed"
    return path


def fit_model(out: Path) -> None:
    """Fit a model with the trainer on 60 real days; write booster + bundle.json to ``out``."""
    import pandas as pd

    from services.common.registry import bundle_meta
    from services.common.settings import Settings, get_settings
    from trainer.baselines import LAMBDA_GRID
    from trainer.dataset import build_dataset
    from trainer.settings import TrainerSettings
    from trainer.train import fit, make_bundle

    t0 = int(pd.Timestamp("2024-06-01", tz="UTC").timestamp())
    parquet = get_settings().shared_data_dir / "btcusdt_1m_2023-2024.parquet"
    df = pd.read_parquet(parquet, filters=[("time", ">=", t0), ("time", "<", t0 + 60 * 86400)])
    ts = TrainerSettings(xgb_rounds=500, dvc_enabled=False)
    ds = build_dataset(df, ts, lambdas=LAMBDA_GRID)
    bundle = make_bundle(fit(ds, ts, 2), ds, "BTC", Settings())
    out.mkdir(parents=True, exist_ok=True)
    bundle.booster.save_model(out / "model.ubj")
    (out / "bundle.json").write_text(json.dumps(bundle_meta(bundle)))
    feats = ds.x(ds.part("test"))[-200:]
    (out / "rows.json").write_text(json.dumps(feats.tolist()))
    (out / "feature_names.json").write_text(json.dumps(ds.feature_names))


def load_model(out: Path) -> Any:
    import xgboost as xgb

    from services.common.registry import bundle_from_meta

    booster = xgb.Booster()
    booster.load_model(out / "model.ubj")
    booster.set_param({"nthread": 1})
    meta = json.loads((out / "bundle.json").read_text())
    return bundle_from_meta(meta, booster, "volstream-rv60", "1", "bench")


def payload(out: Path, i: int = -1) -> dict[str, Any]:
    """A /predict body from a real feature row of the test split."""
    import math

    from services.common.features import FEATURE_VERSION

    names = json.loads((out / "feature_names.json").read_text())
    row = json.loads((out / "rows.json").read_text())[i]
    features = {
        n: None if v is None or math.isnan(v) else v for n, v in zip(names, row, strict=True)
    }
    return {"symbol": "BTC", "feature_version": FEATURE_VERSION, "features": features}


def serve_predictor(port: int, out: Path) -> None:
    """The predictor's app, HTTP only, with the fitted model and a ring of real predictions."""
    import asyncio

    import uvicorn

    from services.common.schemas import FeatureVector
    from services.common.settings import Settings
    from services.predictor.app import build_service, create_app
    from services.predictor.core import RawRecord, process
    from services.predictor.models import StaticRegistry
    from services.predictor.settings import PredictorSettings

    bundle = load_model(out)
    service = build_service(Settings(), PredictorSettings(), StaticRegistry(bundle, champion="1"))
    asyncio.run(service.holder.reload())
    n = min(100, len(json.loads((out / "rows.json").read_text())))
    t0 = int(time.time()) // 60 * 60 - n * 60
    vectors = [FeatureVector(time=t0 + 60 * i, warm=True, **payload(out, i)) for i in range(n)]
    records = [RawRecord("features", 0, i, b"BTC", v.to_bytes()) for i, v in enumerate(vectors)]
    service.ring.extend(process(records, bundle, None).predictions)
    service.worker.assignment.joined = True
    app = create_app(service, run_loops=False)
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")  # fmt: skip


def serve_bare(port: int) -> None:
    """The reference: a bare FastAPI GET endpoint on the same server stack."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")  # fmt: skip


def scoring(out: Path) -> list[dict[str, Any]]:
    """XGBoost inplace_predict per row: one row per call vs 100 rows per call."""
    import numpy as np

    from services.predictor.core import score

    bundle = load_model(out)
    rows = np.array(json.loads((out / "rows.json").read_text()), dtype=np.float64)
    one, batch = rows[:1], rows[:100]

    def median_s(x: np.ndarray, n: int) -> float:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            score(bundle, x)
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    single = median_s(one, 2000)
    per_row = median_s(batch, 300) / len(batch)
    return [
        figure("model size", bundle.booster.num_boosted_rounds(), "trees"),
        figure("scoring: single row", single * 1e6, "us/row", target="<= 350"),
        figure("scoring: micro-batch of 100, per row", per_row * 1e6, "us/row", target="<= 20"),
        figure("scoring: batch speed-up per row", single / per_row, "x"),
    ]


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(text: str) -> dict[str, float]:
    """p50/p99 (ms), requests/s and non-2xx count from ``wrk --latency`` output."""

    def latency(pct: str) -> float:
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        assert m, text
        return float(m.group(1)) * _UNITS[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    assert rps, text
    return {
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "rps": float(rps.group(1)),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


def run_wrk(wrk: str, url: str, script: Path | None = None) -> dict[str, float]:
    """Warm up for 2 s, then measure for DURATION_S at CONCURRENCY connections."""
    extra = ["-s", str(script)] if script else []
    subprocess.run([wrk, "-t1", f"-c{CONCURRENCY}", "-d2s", *extra, url], capture_output=True)
    cmd = [wrk, "-t1", f"-c{CONCURRENCY}", f"-d{DURATION_S}s", "--latency", *extra, url]
    return parse_wrk(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


class Server:
    """One server subprocess of this module, stopped by PID."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_predictor", args[0], str(self.port), *args[1:]],
            start_new_session=True,
            env={**os.environ, "LOG_LEVEL": "WARNING"},
        )

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "server exited"
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/openapi.json", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.3)
        raise TimeoutError("server did not start")

    def __exit__(self, *exc: object) -> None:
        stop_process_group(self.proc)


def http_figures(name: str, stats: dict[str, float]) -> list[dict[str, Any]]:
    return [
        figure(f"{name}: p50", stats["p50_ms"], "ms"),
        figure(f"{name}: p99", stats["p99_ms"], "ms"),
        figure(f"{name}: throughput", stats["rps"], "req/s"),
        figure(f"{name}: non-2xx responses", stats["non_2xx"], "count", target="0"),
    ]


def main() -> dict[str, Any]:
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-predictor-") as tmp:
        out = Path(tmp)
        fit_model(out)
        figures = scoring(out)
        post = out / "post.lua"
        body = json.dumps(payload(out))
        post.write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(body)}\n"
        )
        with Server("bare") as s:
            bare = run_wrk(wrk, f"http://127.0.0.1:{s.port}/")
        with Server("predictor", str(out)) as s:
            base = f"http://127.0.0.1:{s.port}"
            latest = run_wrk(wrk, f"{base}/predictions/latest?symbol=BTC")
            predict = run_wrk(wrk, f"{base}/predict", post)
    figures += http_figures("bare GET /", bare)
    figures += http_figures("GET /predictions/latest", latest)
    figures += http_figures("POST /predict", predict)
    figures += [
        figure("latest rps / bare rps", latest["rps"] / bare["rps"], "x", target=">= 0.8"),
        figure("latest p99 / bare p99", latest["p99_ms"] / bare["p99_ms"], "x", target="<= 1.25"),
        figure("predict rps / bare rps", predict["rps"] / bare["rps"], "x", target=">= 0.4"),
    ]
    save("bench_predictor", figures, concurrency=CONCURRENCY, duration_s=DURATION_S)
    return {"figures": figures}


def serve(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    if kind == "bare":
        serve_bare(port)
    else:
        serve_predictor(port, Path(argv[2]))


if __name__ == "__main__":
    serve(sys.argv[1:])
