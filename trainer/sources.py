"""Where candles come from: a Parquet file in the shared layout, a CryptoCompare JSON file
(v2 envelope, v1 envelope, or a bare ``Data`` array), or the lake written by the featurizer
(``DATA_DIR/lake/candles/symbol=…/date=…/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from services.common.schemas import CANDLE_FIELDS


def cryptocompare_rows(doc: Any) -> list[dict[str, Any]]:
    """The candle rows of a CryptoCompare response, whatever the envelope.

    >>> cryptocompare_rows({"Response": "Success", "Data": {"Data": [{"time": 1}]}})
    [{'time': 1}]
    >>> cryptocompare_rows([{"time": 1}])
    [{'time': 1}]
    """
    if isinstance(doc, list):
        return doc
    data = doc.get("Data")
    if isinstance(data, dict):
        data = data.get("Data")
    if not isinstance(data, list):
        raise ValueError(f"not a CryptoCompare candle response: {doc.get('Message', '')!r}")
    return data


def to_candle_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Only the candle columns, typed (``time`` int64 unix s, prices and volumes float64)."""
    missing = [c for c in CANDLE_FIELDS if c not in df.columns]
    if missing:
        raise ValueError(f"candles lack columns {missing}")
    out = df[list(CANDLE_FIELDS)].astype({c: "float64" for c in CANDLE_FIELDS[1:]})
    return out.astype({"time": "int64"}).reset_index(drop=True)


def read_candles(path: Path, symbol: str | None = None) -> pd.DataFrame:
    """Candles of one symbol from a Parquet or JSON file (a ``symbol`` column, if any, filters)."""
    path = Path(path)
    if path.suffix == ".json":
        df = pd.DataFrame(cryptocompare_rows(orjson.loads(path.read_bytes())))
    else:
        df = pd.read_parquet(path)
    if symbol and "symbol" in df.columns:
        df = df[df["symbol"].astype(str) == symbol]
    return to_candle_frame(df)


def read_lake(
    data_dir: Path, symbol: str, start: str | None = None, end: str | None = None
) -> pd.DataFrame:
    """Candles of ``symbol`` from the lake, ``start <= time < end`` (dates), via the archiver's
    own reader (:func:`services.common.lake.read_lake`)."""
    from services.common.lake import read_lake as lake_reader

    df = lake_reader(Path(data_dir), symbol, start, end)
    if df.empty:
        raise FileNotFoundError(f"no candles of {symbol} in the lake under {data_dir}")
    return to_candle_frame(df)
