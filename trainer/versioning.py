"""Dataset versioning with DVC: every built dataset is written under ``data/datasets/``, added to
DVC, pushed to the remote, and its md5 goes into the MLflow run, so a model traces back to its
exact rows.

The remote is the repo's default (``var/dvc-remote``, see ``.dvc/config``); ``TRAINER_DVC_REMOTE``
(e.g. ``s3://bucket/volstream``, MinIO via ``AWS_ENDPOINT_URL``) overrides it. DVC runs as a
subprocess, only here. Without a DVC repository above ``TRAINER_DATASETS_DIR`` (or with
``TRAINER_DVC_ENABLED=false``) the dataset is still written and fingerprinted by md5, with a
warning.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from trainer.dataset import Dataset
from trainer.settings import TrainerSettings

log = logging.getLogger(__name__)
ENV_REMOTE = "env"


def md5(path: Path) -> str:
    """The file's md5 (what DVC records for a single file)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def dataset_filename(ds: Dataset, symbol: str) -> str:
    """``BTC_rv60_20230108_20241231.parquet``: symbol, target and the origins' date span."""
    span = pd.to_datetime(ds.frame["time"].iloc[[0, -1]], unit="s").dt.strftime("%Y%m%d")
    return f"{symbol}_rv60_{span.iloc[0]}_{span.iloc[1]}.parquet"


def dvc_root(path: Path) -> Path | None:
    """The nearest directory above ``path`` holding a ``.dvc`` directory."""
    for parent in [path, *path.parents]:
        if (parent / ".dvc").is_dir():
            return parent
    return None


def _dvc(args: list[str], cwd: Path) -> str:
    """Run one DVC command; raise with its output on failure."""
    cmd = [str(Path(sys.executable).with_name("dvc")), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip() or proc.stdout}")
    return proc.stdout


def init_standalone(root: Path) -> Path:
    """A DVC repository at ``root`` outside git (``dvc init --no-scm``), made once; returns it.

    For scratch work such as the demo: its datasets are versioned and pushed like any other,
    without writing ``.dvc`` pointers or ``.gitignore`` entries into the project's tree.
    """
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ".dvc").is_dir():
        _dvc(["init", "--no-scm", "--quiet"], root)
    return root


def track(path: Path, ts: TrainerSettings) -> bool:
    """``dvc add`` and ``dvc push`` one file; False (and a warning) when DVC is off or absent."""
    root = dvc_root(path.parent.resolve())
    if not ts.dvc_enabled or root is None:
        log.warning("dataset not DVC-tracked", extra={"path": str(path), "dvc_root": str(root)})
        return False
    _dvc(["add", "--quiet", str(path)], root)
    push = ["push", "--quiet", str(path) + ".dvc"]
    if ts.dvc_remote:
        _dvc(["remote", "add", "--local", "--force", ENV_REMOTE, ts.dvc_remote], root)
        push += ["--remote", ENV_REMOTE]
    _dvc(push, root)
    log.info("dataset versioned", extra={"path": str(path), "remote": ts.dvc_remote or "default"})
    return True


def version_dataset(
    ds: Dataset, symbol: str, ts: TrainerSettings, source: Path | None = None
) -> dict[str, Any]:
    """Write, DVC-track and push the dataset; its fingerprint for the run's tags."""
    ts.datasets_dir.mkdir(parents=True, exist_ok=True)
    path = ts.datasets_dir / dataset_filename(ds, symbol)
    ds.frame.to_parquet(path, index=False)
    tracked = track(path, ts)
    out: dict[str, Any] = {
        "path": str(path),
        "md5": md5(path),
        "dvc": tracked,
        "rows": len(ds.frame),
    }
    if source is not None and Path(source).is_file():
        out |= {"source": str(source), "source_md5": md5(Path(source))}
    return out
