"""Predictor benchmark: REST latency and throughput at concurrency 32 against a bare FastAPI
endpoint on the same machine, and XGBoost scoring per row, single row vs micro-batch.

Each server runs alone in its own process (one uvicorn worker, uvloop + httptools, no access
log), loaded by ``wrk`` (Debian's, installed if missing). The model is the one ``make run``
serves: the trainer's defaults on the whole two-year file (its tree count is printed). The
predictor serves with a ring filled with real predictions. The bare endpoint is loaded before
and after the predictor's runs (the predictor stopped by then) and the ceiling is the mean of
the two, so a change of load during the benchmark does not fall on one side only. Figures are
printed against the targets, never asserted.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.common import figure, save
from devstack.broker import EmbeddedBroker, free_port
from devstack.procs import stop_process_group
from services.common.settings import metrics_off_env

CONCURRENCY = 32
DURATION_S = 8
FEED_RATE = 100.0  # feature vectors/s into the predictor's stream loop while wrk runs


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
    """The model ``make run`` serves: the trainer's defaults on the two-year file less the gate's
    held-out days, with its calibrated drift limits (what ``volstream train`` registers);
    booster + bundle.json to ``out``."""
    import pandas as pd

    from services.common.registry import bundle_meta
    from services.common.settings import Settings, get_settings
    from trainer.baselines import LAMBDA_GRID
    from trainer.dataset import build_dataset
    from trainer.holdout import training_part
    from trainer.settings import TrainerSettings
    from trainer.train import fit, served_bundle

    df = pd.read_parquet(get_settings().shared_data_dir / "btcusdt_1m_2023-2024.parquet")
    ts = TrainerSettings(dvc_enabled=False)
    ds = build_dataset(training_part(df, ts.holdout_days), ts, lambdas=LAMBDA_GRID)
    bundle = served_bundle(df, ds, fit(ds, ts, ts.xgb_threads), "BTC", Settings())
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
    # as it serves: its stream loop consumes `features` (fed at a steady rate by `feed`)
    app = create_app(service, run_loops=True)
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")  # fmt: skip


def feed(out: Path, rate: float = FEED_RATE) -> None:
    """Publish real feature vectors to ``features`` at ``rate``/s over three symbols, one at a
    time (as the featurizer does in live mode), until killed."""
    import asyncio

    from services.common import kafka
    from services.common.schemas import FeatureVector
    from services.common.settings import get_settings
    from services.common.topics import FEATURES

    rows = [payload(out, i) for i in range(len(json.loads((out / "rows.json").read_text())))]

    async def run() -> None:
        producer = kafka.make_producer(get_settings(), linger_ms=0)
        await producer.start()
        t0, clock0 = time.monotonic(), int(time.time()) // 60 * 60
        for i in range(10**9):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            symbol = ("BTC", "ETH", "SOL")[i % 3]
            body = {**rows[(i // 3) % len(rows)], "symbol": symbol}
            vector = FeatureVector(time=clock0 + 60 * (i // 3), warm=True, **body)
            await producer.send(FEATURES, value=vector.to_bytes(), key=symbol.encode())

    asyncio.run(run())


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

    from services.common.adaptive_intervals import AdaptiveIntervals
    from services.common.schemas import FeatureVector
    from services.predictor.core import interval_bounds, score

    bundle = load_model(out)
    rows = np.array(json.loads((out / "rows.json").read_text()), dtype=np.float64)
    one, batch = rows[:1], rows[:100]
    adaptive = AdaptiveIntervals(bundle.intervals, 0.8)  # the stream's path: live calibration
    minute = iter(range(0, 10**9, 60))

    def medians_s(x: np.ndarray, n: int) -> tuple[float, float]:
        """Median time to score ``x``, and to score it with intervals: the two interleaved,
        call by call, so a change of load between them cannot skew their ratio."""
        plain, with_iv = [], []
        for _ in range(n):
            vecs = [FeatureVector.model_construct(symbol="BTC", time=next(minute)) for _ in x]
            t = time.perf_counter()
            score(bundle, x)
            plain.append(time.perf_counter() - t)
            t = time.perf_counter()
            log_rv = score(bundle, x)
            interval_bounds(bundle, log_rv, x, 0.8, adaptive, vecs)  # what rv_lo / rv_hi add
            with_iv.append(time.perf_counter() - t)
        return float(np.median(plain)), float(np.median(with_iv))

    single, single_iv = medians_s(one, 2000)
    per_row, per_row_iv = (s / len(batch) for s in medians_s(batch, 300))
    return [
        figure(
            "scoring with intervals: single row, extra",
            100 * (single_iv / single - 1),
            "%",
            "<= 25",
            id="score_interval_extra_single_pct",
        ),
        figure(
            "scoring with intervals: batch of 100, extra per row",
            100 * (per_row_iv / per_row - 1),
            "%",
            "<= 25",
            id="score_interval_extra_batch_pct",
        ),
        figure("model size", bundle.booster.num_boosted_rounds(), "trees", id="served_model_trees"),
        figure("scoring: single row", single * 1e6, "us/row", "<= 300", id="score_single_us"),
        figure(
            "scoring: micro-batch of 100, per row",
            per_row * 1e6,
            "us/row",
            "<= 10",
            id="score_batch_us_per_row",
        ),
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(wrk: str, url: str, pid: int, script: Path | None = None) -> dict[str, float]:
    """Warm up for 2 s, then measure for DURATION_S at CONCURRENCY connections; with the
    server's CPU per request (``pid``'s CPU over the run / requests) and the load average."""
    extra = ["-s", str(script)] if script else []
    subprocess.run([wrk, "-t1", f"-c{CONCURRENCY}", "-d2s", *extra, url], capture_output=True)
    cmd = [wrk, "-t1", f"-c{CONCURRENCY}", f"-d{DURATION_S}s", "--latency", *extra, url]
    cpu0 = cpu_seconds(pid)
    stats = parse_wrk(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    stats["cpu_us_per_request"] = (cpu_seconds(pid) - cpu0) / (stats["rps"] * DURATION_S) * 1e6
    stats["load1"] = os.getloadavg()[0]
    return stats


def mean_stats(runs: list[dict[str, float]]) -> dict[str, float]:
    """The mean of several ``run_wrk`` results (non-2xx responses summed)."""
    out = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
    out["non_2xx"] = sum(r["non_2xx"] for r in runs)
    return out


def idle_cpu(pid: int, seconds: float = 4.0) -> float:
    """Cores a server uses with no HTTP load (the predictor: its stream loop at FEED_RATE)."""
    cpu0 = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - cpu0) / seconds


class Server:
    """One server subprocess of this module, stopped by PID."""

    def __init__(self, *args: str, bootstrap: str = "") -> None:
        self.port = free_port()
        env = {**os.environ, "LOG_LEVEL": "WARNING", "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_predictor", args[0], str(self.port), *args[1:]],
            start_new_session=True,
            env={**env, **metrics_off_env()},
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

    @contextlib.contextmanager
    def running(self) -> Iterator[Server]:
        """A process that serves no HTTP (the feed): only stopped by PID at the end."""
        try:
            yield self
        finally:
            stop_process_group(self.proc)


def scored(base: str) -> float:
    """Vectors the predictor's stream loop has scored so far (its own metrics)."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    m = re.search(r'^predictor_vectors_total{outcome="scored"} (\S+)', text, re.M)
    return float(m.group(1)) if m else 0.0


def wait_steady(base: str, timeout_s: float = 120.0) -> None:
    """Until the stream loop has joined its group and caught up with the feed (two seconds in
    a row scoring about FEED_RATE vectors): the figures are of the steady state, not of the
    backlog the feed built while the predictor started."""
    deadline, calm, last = time.monotonic() + timeout_s, 0, scored(base)
    while time.monotonic() < deadline and calm < 2:
        time.sleep(1.0)
        now = scored(base)
        calm = calm + 1 if 0 < now - last <= 1.5 * FEED_RATE else 0
        last = now
    assert calm >= 2, "the predictor's stream loop did not reach the feed's steady rate"


def rest_batches(base: str) -> float:
    """Mean rows per XGBoost call of ``/predict`` so far, from the predictor's own metrics."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    requests = re.search(
        r'^http_requests_total{method="POST",route="/predict",status="200"} (\S+)', text, re.M
    )
    calls = re.search(r'^prediction_latency_seconds_count{path="rest"} (\S+)', text, re.M)
    return float(requests.group(1)) / float(calls.group(1)) if requests and calls else math.nan


def http_figures(name: str, stats: dict[str, float]) -> list[dict[str, Any]]:
    return [
        figure(f"{name}: p50", stats["p50_ms"], "ms"),
        figure(f"{name}: p99", stats["p99_ms"], "ms"),
        figure(f"{name}: throughput", stats["rps"], "req/s"),
        figure(f"{name}: non-2xx responses", stats["non_2xx"], "count", target="0"),
        figure(f"{name}: server CPU per request", stats["cpu_us_per_request"], "us"),
        figure(f"{name}: load average (1 min) after the run", stats["load1"], ""),
    ]


def main() -> dict[str, Any]:
    import asyncio

    from bench.harness import read_topic
    from services.common import kafka
    from services.common.settings import Settings
    from services.common.topics import PREDICTIONS

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
        with EmbeddedBroker(port=free_port(), log_path=out / "broker.log") as broker:
            asyncio.run(kafka.ensure_topics(Settings(kafka_bootstrap_servers=broker.bootstrap)))
            # the same steady feed runs under both servers: they share the 2 cores with it
            with Server("feed", str(out), bootstrap=broker.bootstrap).running():
                # the ceiling is measured before and after the predictor's runs (the predictor
                # stopped, its stream loop with it) and averaged: a change of load during the
                # benchmark moves both sides alike instead of only one
                with Server("bare") as b:
                    bare_url = f"http://127.0.0.1:{b.port}/"
                    bares = [run_wrk(wrk, bare_url, b.proc.pid)]
                    with Server("predictor", str(out), bootstrap=broker.bootstrap) as s:
                        wait_steady(f"http://127.0.0.1:{s.port}")
                        stream_cores = idle_cpu(s.proc.pid)
                        base = f"http://127.0.0.1:{s.port}"
                        latest = run_wrk(wrk, f"{base}/predictions/latest?symbol=BTC", s.proc.pid)
                        predict = run_wrk(wrk, f"{base}/predict", s.proc.pid, post)
                        batches = rest_batches(base)
                    bares.append(run_wrk(wrk, bare_url, b.proc.pid))
                bare = mean_stats(bares)
            settings = Settings(kafka_bootstrap_servers=broker.bootstrap)
            streamed = len(asyncio.run(read_topic(settings, PREDICTIONS, idle_s=1.0)))
    figures.append(figure("stream loop: predictions published while serving", streamed, ""))
    figures.append(
        figure(
            "predictor CPU with no HTTP load (its stream loop at 100 vectors/s)",
            stream_cores * 1e3,
            "ms/s",
        )
    )
    figures.append(figure("POST /predict: mean rows per XGBoost call", batches, "rows"))
    figures += http_figures("bare GET / (mean of before and after)", bare)
    figures.append(
        figure(
            "bare GET /: rps after / rps before the predictor's runs (load drift)",
            bares[1]["rps"] / bares[0]["rps"],
            "x",
        )
    )
    figures += http_figures("GET /predictions/latest", latest)
    figures += http_figures("POST /predict", predict)
    figures += [
        figure(
            "latest rps / bare rps",
            latest["rps"] / bare["rps"],
            "x",
            ">= 0.9",
            f"bare {bare['rps']:,.0f} rps",
            id="rest_latest_rps_ratio",
        ),
        figure(
            "latest p99 / bare p99",
            latest["p99_ms"] / bare["p99_ms"],
            "x",
            "<= 1.15",
            f"bare p99 {bare['p99_ms']:,.1f} ms",
            id="rest_latest_p99_ratio",
        ),
        figure(
            "predict rps / bare rps",
            predict["rps"] / bare["rps"],
            "x",
            ">= 0.5",
            f"bare {bare['rps']:,.0f} rps",
            id="rest_predict_rps_ratio",
        ),
    ]
    save("bench_predictor", figures, concurrency=CONCURRENCY, duration_s=DURATION_S)
    return {"figures": figures}


def serve(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    if kind == "bare":
        serve_bare(port)
    elif kind == "feed":
        feed(Path(argv[2]))
    else:
        serve_predictor(port, Path(argv[2]))


if __name__ == "__main__":
    serve(sys.argv[1:])
