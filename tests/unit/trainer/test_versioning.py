"""Dataset fingerprints without DVC (the DVC path runs in tests/integration/test_trainer_cli.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from trainer.dataset import Dataset
from trainer.settings import TrainerSettings
from trainer.versioning import dataset_filename, dvc_root, version_dataset


def small_dataset() -> Dataset:
    frame = pd.DataFrame(
        {"time": [1_704_067_200, 1_704_153_600], "split": "train", "y": [-5.0, -4.9]}
    )
    return Dataset(frame, [], "fs-test")


def test_filename_spans_the_origins():
    assert dataset_filename(small_dataset(), "BTC") == "BTC_rv60_20240101_20240102.parquet"


def test_dvc_root_is_found_upwards(tmp_path: Path):
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "data" / "datasets").mkdir(parents=True)
    assert dvc_root(tmp_path / "data" / "datasets") == tmp_path
    assert dvc_root(Path("/")) is None


def test_without_dvc_the_dataset_is_written_and_fingerprinted(tmp_path: Path):
    source = tmp_path / "candles.parquet"
    source.write_bytes(b"not really parquet, only hashed")
    ts = TrainerSettings(datasets_dir=tmp_path / "out", dvc_enabled=False)
    fp = version_dataset(small_dataset(), "BTC", ts, source)
    written = Path(fp["path"])
    assert written.exists() and not fp["dvc"] and fp["rows"] == 2
    assert fp["md5"] == hashlib.md5(written.read_bytes()).hexdigest()
    assert fp["source_md5"] == hashlib.md5(source.read_bytes()).hexdigest()
    assert pd.read_parquet(written)["y"].tolist() == [-5.0, -4.9]
