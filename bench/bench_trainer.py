"""``volstream train`` on the 2-year BTCUSDT file: wall time, peak memory and the model's gains.

A private MLflow server (free port) and a throw-away DVC repository and remote keep the run off
the developer's stack; both are removed afterwards, the server stopped by its PID.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import figure, save
from devstack.mlflow_local import MlflowServer
from services.common.settings import get_settings

DATA = get_settings().shared_data_dir / "btcusdt_1m_2023-2024.parquet"
BIN = Path(sys.executable).parent


def train_once(root: Path, uri: str) -> tuple[dict[str, Any], float, float, float]:
    """Run ``volstream train --json`` once: its output, wall seconds, peak child RSS (MB) and
    CPU seconds of the children (user + sys: a load-independent cost, unlike wall time)."""
    repo = root / "repo"
    repo.mkdir()
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=repo, check=True)
    env = dict(os.environ) | {
        "MLFLOW_TRACKING_URI": uri,
        "MODEL_NAME": f"bench-{uuid.uuid4().hex[:8]}",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # no broker: events are best effort
        "TRAINER_DATASETS_DIR": str(repo / "data" / "datasets"),
        "TRAINER_DVC_REMOTE": str(root / "remote"),
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "volstream"), "train", "--data", str(DATA), "--json"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    return json.loads(proc.stdout), wall, usage.ru_maxrss / 1024, cpu


def main() -> dict[str, Any]:
    load = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp,
        MlflowServer(Path(tmp) / "mlflow") as server,
    ):
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out, wall, peak_mb, cpu = train_once(Path(tmp), server.uri)
        cpu -= cpu0.ru_utime + cpu0.ru_stime
    report = out["report"]
    gain_har = 1 - report["model"]["qlike"] / report["har"]["qlike"]
    gain_seasonal = 1 - report["model"]["qlike"] / report["har_seasonal"]["qlike"]
    figures = [
        figure("train 2-year file: wall time", wall, "s", target="<= 60 s on 2 idle cores"),
        figure("train 2-year file: CPU time (user+sys)", cpu, "s"),
        figure("train 2-year file: peak RSS", peak_mb, "MB"),
        figure("test QLIKE gain vs HAR", 100 * gain_har, "%", target=">= 15 %"),
        figure("test QLIKE gain vs har_seasonal", 100 * gain_seasonal, "%"),
        figure(
            "DM stat model vs har_seasonal",
            report["dm"]["har_seasonal"]["stat"],
            "",
            target="< -1.96",
        ),
        figure("test R2 of log RV", report["model"]["r2"], ""),
        figure("load average (1 min) at start", load, "", ceiling="context: other jobs"),
    ]
    save("trainer", figures, test_origins=report["n"], promoted=out["decision"]["promoted"])
    return {"figures": figures, "report": report}


if __name__ == "__main__":
    main()
