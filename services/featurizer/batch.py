"""``volstream features``: the batch feature path over a candle file (Parquet or JSON).

The output has one row per candle time after warm-up, with columns ``symbol``, ``time`` and one
column per feature (``FEATURE_NAMES`` order); the feature version is stored in the Parquet
metadata. Accepted inputs: Parquet with the candle columns, a JSON array of candles, JSON lines,
(``volstream tail`` lines too), or a CryptoCompare ``histominute`` response (v1 ``{"Data": [...]}`` or v2 ``{"Data": {"Data":
[...]}}``). A ``symbol`` column splits the file per symbol; without one, ``--symbol`` names it::

    >>> rows = [{"time": 60 * k, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
    ...          "volumefrom": 1.0, "volumeto": 1.0} for k in range(3)]
    >>> table = batch_features(candles_from_json(rows), symbol="BTC", include_cold=True)
    >>> table[["symbol", "time", "warm", "ret_1m"]].to_dict("list")
    {'symbol': ['BTC', 'BTC', 'BTC'], 'time': [0, 60, 120], 'warm': [False, False, False], 'ret_1m': [nan, 0.0, 0.0]}
"""  # noqa: E501

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

CANDLE_COLUMNS = ("time", "open", "high", "low", "close", "volumefrom", "volumeto")


def candles_from_json(doc: Any) -> Any:
    """A candle DataFrame from parsed JSON: a list, or a CryptoCompare v1/v2 response."""
    import pandas as pd

    data = doc
    while isinstance(data, dict) and "Data" in data:
        data = data["Data"]
    if not isinstance(data, list):
        raise ValueError("expected a list of candles or a CryptoCompare histominute response")
    return pd.DataFrame(data)


def read_candles(path: Path) -> Any:
    """Read candles: ``.parquet`` (a file or a dataset directory), ``.json`` or ``.jsonl``."""
    import orjson
    import pandas as pd

    if path.suffix == ".parquet" or path.is_dir():  # a file, or a partitioned dataset (the lake)
        return pd.read_parquet(path)
    text = path.read_bytes()
    if path.suffix == ".jsonl" or (text.lstrip()[:1] == b"{" and b"\n{" in text.strip()):
        rows = [orjson.loads(line) for line in text.splitlines() if line.strip()]
        return pd.DataFrame([r["value"] if isinstance(r.get("value"), dict) else r for r in rows])
    return candles_from_json(orjson.loads(text))


def batch_features(candles: Any, symbol: str, include_cold: bool = False) -> Any:
    """Features of every symbol in ``candles`` (``symbol`` column, else ``symbol``)."""
    import pandas as pd

    from services.common.features import featurize_many

    if "symbol" not in candles.columns:
        candles = candles.assign(symbol=symbol)
    parts = []
    for name, group in candles.groupby("symbol", sort=True, observed=True):
        table = featurize_many(group[list(CANDLE_COLUMNS)])
        if not include_cold:
            table = table[table["warm"]].drop(columns="warm")
        parts.append(table.assign(symbol=name))
    if not parts:
        return pd.DataFrame(columns=["symbol", "time"])
    out = pd.concat(parts, ignore_index=True)
    return out[["symbol", *[c for c in out.columns if c != "symbol"]]]


def write_features(table: Any, path: Path) -> None:
    """Write Parquet with the feature set's name and version in the schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from services.common.features import FEATURE_SET_NAME, FEATURE_VERSION

    arrow = pa.Table.from_pandas(table, preserve_index=False)
    meta = {
        **(arrow.schema.metadata or {}),
        b"feature_set": FEATURE_SET_NAME.encode(),
        b"feature_version": FEATURE_VERSION.encode(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow.replace_schema_metadata(meta), path)


def features(
    input: Annotated[Path, typer.Option("--input", help="candles: .parquet, .json or .jsonl")],
    output: Annotated[Path, typer.Option("--output", help="features .parquet to write")],
    symbol: Annotated[str, typer.Option(help="symbol when the input has no symbol column")] = "BTC",
    include_cold: Annotated[
        bool, typer.Option("--include-cold", help="also rows before warm-up (adds `warm`)")
    ] = False,
) -> None:
    """Compute the batch features of a candle file (one row per candle time after warm-up)."""
    from services.common.features import FEATURE_VERSION

    if not input.exists():
        raise typer.BadParameter(f"{input} does not exist", param_hint="--input")
    table = batch_features(read_candles(input), symbol=symbol, include_cold=include_cold)
    write_features(table, output)
    typer.echo(f"{len(table)} rows, feature version {FEATURE_VERSION} -> {output}")


def register(app: typer.Typer) -> None:
    """Add ``volstream features``."""
    app.command("features")(features)
