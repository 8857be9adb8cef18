"""``volstream features``: Parquet and JSON inputs, warm rows only, version in the metadata."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import typer
from typer.testing import CliRunner

from services.common.features import FEATURE_NAMES, FEATURE_VERSION, WARMUP_MINUTES, featurize_many
from services.featurizer import batch


def _app() -> typer.Typer:
    app = typer.Typer()
    batch.register(app)
    app.command("noop", hidden=True)(lambda: None)  # a group, so `features` is a subcommand
    return app


def _walk(minutes: int) -> pd.DataFrame:
    close = 100 * np.exp(np.cumsum(np.random.default_rng(2).normal(0, 1e-3, minutes)))
    return pd.DataFrame(
        {
            "time": 1_733_097_600 + 60 * np.arange(minutes),
            "open": close,
            "high": close * 1.001,
            "low": close * 0.999,
            "close": close,
            "volumefrom": 1.0,
            "volumeto": 5e5,
        }
    )


def test_parquet_in_warm_rows_out(tmp_path):
    candles = _walk(WARMUP_MINUTES + 120)
    candles.sample(frac=1.0, random_state=1).to_parquet(tmp_path / "c.parquet")  # unsorted
    result = CliRunner().invoke(
        _app(),
        [
            "features",
            "--input",
            str(tmp_path / "c.parquet"),
            "--output",
            str(tmp_path / "f.parquet"),
        ],
    )
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "f.parquet")
    assert table.schema.metadata[b"feature_version"] == FEATURE_VERSION.encode()
    out = table.to_pandas()
    assert out.columns.tolist() == ["symbol", "time", *FEATURE_NAMES]
    assert len(out) == 120 and set(out["symbol"]) == {"BTC"}
    expected = featurize_many(candles).iloc[-120:].drop(columns="warm").reset_index(drop=True)
    pd.testing.assert_frame_equal(out.drop(columns="symbol"), expected, check_exact=True)


def test_cryptocompare_json_and_json_lines(tmp_path, shared_data):
    source = shared_data / "cryptocompare" / "cc_histominute_BTCUSDT_2024-03-01_7d.json"
    out_path = tmp_path / "f.parquet"
    args = ["features", "--input", str(source), "--output", str(out_path), "--include-cold"]
    result = CliRunner().invoke(_app(), [*args, "--symbol", "XBT"])
    assert result.exit_code == 0, result.output
    out = pd.read_parquet(out_path)
    rows = json.loads(source.read_text())["Data"]["Data"]
    assert len(out) == len(rows) and set(out["symbol"]) == {"XBT"}
    assert out["warm"].sum() == len(rows) - WARMUP_MINUTES  # --include-cold kept the warm-up
    lines = tmp_path / "c.jsonl"
    lines.write_text(
        "".join(json.dumps({"value": {**r, "symbol": "ETH"}}) + "\n" for r in rows[:500])
    )
    assert (
        CliRunner()
        .invoke(_app(), ["features", "--input", str(lines), "--output", str(out_path)])
        .exit_code
        == 0
    )
    assert pd.read_parquet(out_path).empty  # 500 minutes: nothing is warm yet


def test_partitioned_dataset_with_two_symbols(tmp_path):
    candles = _walk(WARMUP_MINUTES + 30)
    both = pd.concat(
        [candles.assign(symbol="BTC"), candles.assign(symbol="ETH", close=candles["close"] * 2)]
    )
    both["date"] = pd.to_datetime(both["time"], unit="s").dt.strftime("%Y-%m-%d")
    both.to_parquet(tmp_path / "lake", partition_cols=["symbol", "date"])
    out_path = tmp_path / "f.parquet"
    args = ["features", "--input", str(tmp_path / "lake"), "--output", str(out_path)]
    assert CliRunner().invoke(_app(), args).exit_code == 0
    out = pd.read_parquet(out_path)
    assert out.groupby("symbol", observed=True).size().to_dict() == {"BTC": 30, "ETH": 30}
    btc, eth = (out[out["symbol"] == s].reset_index(drop=True) for s in ("BTC", "ETH"))
    assert (btc["rv_60m"] == eth["rv_60m"]).all() and (btc["time"] == eth["time"]).all()
