"""Walk-forward splits: each quarter is tested on its hourly origins, trained on what precedes
it, with the embargo at both boundaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer.dataset import Dataset
from trainer.walkforward import quarter_dataset, quarters


def test_quarter_dataset_splits_and_embargo() -> None:
    t0 = int(pd.Timestamp("2023-06-01", tz="UTC").timestamp())
    times = t0 + 1200 * np.arange(int(500 * 86400 / 1200))  # 20-minute origins
    rows = Dataset(pd.DataFrame({"time": times, "split": "", "y": 0.0}), [], "v")
    label, start, end = quarters(2024)[1]
    ds = quarter_dataset(rows, start, end)
    f = ds.frame
    q0, q1 = int(start.timestamp()), int(end.timestamp())
    v0 = int(pd.Timestamp("2024-01-01", tz="UTC").timestamp())
    test, valid, train = (f[f["split"] == s]["time"] for s in ("test", "valid", "train"))
    assert label == "2024Q2" and ds.bounds == (v0, q0)
    assert test.min() == q0 and test.max() == q1 - 3600 and (test % 3600 == 0).all()
    assert len(test) == (q1 - q0) // 3600
    assert valid.min() == v0 and valid.max() + 7200 <= q0 and (valid % 3600 != 0).any()
    assert train.max() + 7200 <= v0 and train.min() == t0
    assert set(f["split"]) == {"train", "valid", "test"}


def test_quarter_option_takes_numbers_one_to_four() -> None:
    import typer

    from trainer.cli import _quarter_numbers

    assert _quarter_numbers("4") == (4,) and _quarter_numbers("3, 1,3") == (1, 3)
    for bad in ("", "5", "q4", "0,1"):
        with pytest.raises(typer.BadParameter):
            _quarter_numbers(bad)
