"""A real day of BTCUSDT candles for the quality-gate and snapshot tests."""

from __future__ import annotations

import pandas as pd
import pyarrow.dataset as ds
import pytest

from services.common.settings import REPO_ROOT

TWO_YEAR_FILE = REPO_ROOT.parent / "shared" / "data" / "btcusdt_1m_2023-2024.parquet"
#: 2024-03-01 00:00 UTC .. 2024-03-03 00:00 UTC: two calm-to-busy days of real candles.
DAY0 = 1709251200
DAY = 86400


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    """Two real days (2,880 one-minute candles), read in place from the shared file."""
    where = (ds.field("time") >= DAY0) & (ds.field("time") < DAY0 + 2 * DAY)
    frame = ds.dataset(TWO_YEAR_FILE).to_table(filter=where).to_pandas()
    return frame.sort_values("time").reset_index(drop=True)
