"""The demo versions its training set in its own DVC repository, leaving git's tree untouched."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devstack.demo import dataset_env
from trainer.settings import TrainerSettings
from trainer.versioning import track

REPO = Path(__file__).resolve().parents[3]


def git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--", "data"], cwd=REPO, capture_output=True, text=True
    ).stdout


def test_demo_dataset_is_versioned_outside_the_project_tree(tmp_path: Path) -> None:
    before = git_status()
    env = dataset_env(tmp_path / "demo")
    ts = TrainerSettings(
        datasets_dir=Path(env["TRAINER_DATASETS_DIR"]), dvc_remote=env["TRAINER_DVC_REMOTE"]
    )
    ts.datasets_dir.mkdir(parents=True)
    data = ts.datasets_dir / "BTC_rv60_x.parquet"
    data.write_bytes(b"rows")

    assert track(data, ts) is True
    assert (ts.datasets_dir / "BTC_rv60_x.parquet.dvc").is_file()
    pushed = [p for p in Path(env["TRAINER_DVC_REMOTE"]).rglob("*") if p.is_file()]
    assert len(pushed) == 1 and pushed[0].read_bytes() == b"rows"
    assert not (ts.datasets_dir / ".gitignore").exists()  # no git: DVC writes no ignore entry
    assert git_status() == before
    assert dataset_env(tmp_path / "demo") == env  # made once, reused
