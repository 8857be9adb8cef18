"""``make chaos``: kill -9 each service in turn while real data replays, then prove nothing was
lost or duplicated.

While real BTC candles replay through ingestor → validator → featurizer → predictor, each
service is SIGKILLed and restarted in turn; then the ingestor polls the emulator live (a recorded
CryptoCompare week as ``ETH``) and is SIGKILLed and restarted once more. Afterwards every topic is
read back in full:

- every candle of the feed file is on ``ticks.clean`` exactly once, or in a dead letter that
  names its time (the expected set comes from the file, not from ``ticks.raw``: a candle the
  ingestor loses is missed too), and nothing else is on ``ticks.clean``;
- ``features`` and ``predictions`` miss no (symbol, time), and a key repeated after a crash
  carries the same value;
- no consumer is stuck: each group's committed offsets reach the end of its input within a bound.

``python -m bench.chaos [--days N] [--speed X]``; the test suite runs a short version.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
import pyarrow.parquet as pq

from bench.harness import (
    GROUPS,
    SHARED,
    Pipeline,
    Record,
    committed,
    read_topic,
    true_ends,
    write_slice,
)
from devstack.broker import free_port, port_open
from devstack.mlflow_local import MlflowServer
from services.common.errors import SchemaError
from services.common.schemas import Candle, DeadLetter, FeatureVector, Prediction, RawBatch
from services.common.topics import FEATURES, PREDICTIONS, TICKS_CLEAN, TICKS_DLQ, TICKS_RAW

INPUTS = {"validator": TICKS_RAW, "featurizer": TICKS_CLEAN, "predictor": FEATURES}


@dataclass
class ChaosReport:
    """What the run measured; ``problems`` is empty when every guarantee held."""

    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    kills: list[str] = field(default_factory=list)
    catch_up_s: float | None = None

    def print(self) -> None:
        for k, v in self.counts.items():
            print(f"{k:<44} {v:>10,}")
        print(f"{'kills (kill -9, then restart)':<44} {', '.join(self.kills)}")
        print(f"{'consumers caught up after the feed in':<44} {self.catch_up_s} s")
        print("OK: nothing lost, nothing duplicated" if not self.problems else "PROBLEMS:")
        for p in self.problems:
            print("  -", p)


def _by_key(records: list[Record], model: type[Any]) -> dict[tuple[str, int], list[Any]]:
    out: dict[tuple[str, int], list[Any]] = defaultdict(list)
    for r in records:
        msg = model.from_bytes(r.value)
        out[(msg.symbol, msg.time)].append(msg)
    return out


def expected_keys(feed: Path, symbol: str) -> set[tuple[str, int]]:
    """The (symbol, time) of every candle in the feed file: what must come out the other end."""
    return {(symbol, int(t)) for t in pq.read_table(feed, columns=["time"])["time"].to_pylist()}


def named_times(letter: DeadLetter) -> set[tuple[str, int]]:
    """The candles a dead letter names: its event time, or every row of a whole RawBatch."""
    if letter.symbol and letter.event_time is not None:
        return {(letter.symbol, letter.event_time)}
    try:
        batch = RawBatch.from_bytes(letter.payload())
    except SchemaError:
        return set()
    return {(batch.symbol, c["time"]) for c in batch.candles if isinstance(c.get("time"), int)}


def check_candles(
    expected: set[tuple[str, int]], clean: list[Record], dlq: list[Record], report: ChaosReport
) -> Counter[tuple[str, int]]:
    """Every expected candle is on ticks.clean exactly once, or in a dead letter that names its
    time; nothing else is on ticks.clean. Returns the clean count per key."""
    clean_count = Counter((c.symbol, c.time) for c in (Candle.from_bytes(r.value) for r in clean))
    dead = [DeadLetter.from_bytes(r.value) for r in dlq]
    named: set[tuple[str, int]] = set().union(*(named_times(d) for d in dead)) if dead else set()
    report.counts.update(
        {
            "expected candles (feed file)": len(expected),
            "clean candles": len(clean),
            "dead letters": len(dead),
        }
    )
    dupes = sorted(k for k, n in clean_count.items() if n > 1)
    if dupes:
        report.problems.append(f"{len(dupes)} candles on ticks.clean more than once: {dupes[:3]}")
    missing = sorted(expected - set(clean_count) - named)
    if missing:
        report.problems.append(
            f"{len(missing)} expected candles neither on ticks.clean nor named by a dead letter:"
            f" {missing[:3]}"
        )
    unexpected = sorted(set(clean_count) - expected)
    if unexpected:
        report.problems.append(f"{len(unexpected)} candles on ticks.clean not in the feed")
    return clean_count


def check(
    expected: set[tuple[str, int]],
    clean: list[Record],
    dlq: list[Record],
    feats: list[Record],
    preds: list[Record],
    report: ChaosReport,
) -> None:
    """Conservation and exactly-once-by-key across the four stages."""
    clean_count = check_candles(expected, clean, dlq, report)
    by_feat = _by_key(feats, FeatureVector)
    lost_feats = set(clean_count) - set(by_feat)
    report.counts["feature vectors"] = len(feats)
    report.counts["feature keys repeated after a crash"] = sum(len(v) > 1 for v in by_feat.values())
    if lost_feats:
        report.problems.append(f"{len(lost_feats)} clean candles without features")
    for key, vs in by_feat.items():
        if any(v.features != vs[0].features or v.warm != vs[0].warm for v in vs[1:]):
            report.problems.append(f"features for {key} differ between repeats")
    warm = {k for k, vs in by_feat.items() if vs[0].warm}
    by_pred = _by_key([r for r in preds if b'"role":"champion"' in r.value], Prediction)
    report.counts["warm feature vectors"] = len(warm)
    report.counts["champion predictions"] = sum(len(v) for v in by_pred.values())
    report.counts["prediction keys repeated after a crash"] = sum(
        len(v) > 1 for v in by_pred.values()
    )
    if warm - set(by_pred):
        report.problems.append(f"{len(warm - set(by_pred))} warm vectors without a prediction")
    for key, ps in by_pred.items():
        if any(abs(p.log_rv - ps[0].log_rv) > 1e-9 for p in ps[1:]):
            report.problems.append(f"predictions for {key} differ between repeats")


#: The live phase's feed: a recorded CryptoCompare week, served by the emulator as ``ETH``.
LIVE_FEED = SHARED / "cryptocompare" / "cc_histominute_BTCUSDT_2024-03-01_7d.json"
LIVE_SYMBOL = "ETH"


def live_phase(pipe: Pipeline, report: ChaosReport, minutes: int = 3) -> set[tuple[str, int]]:
    """Live polling against the emulator (real time, two hours of history behind ten minutes
    ago), the ingestor killed with -9 mid-way and restarted; then the emulator's clock stops and
    the ingestor catches up. Returns the candles the emulator served: what must come out."""
    port = free_port()
    start = (int(time.time()) - 600) // 60 * 60
    emulator = ["devstack.emulator", "--port", str(port), "--speed", "1", "--history-days", "0.1"]
    emulator += ["--start-time", str(start), "--dataset", f"{LIVE_SYMBOL}={LIVE_FEED}"]
    pipe.start("emulator", [sys.executable, "-m", *emulator])
    url = f"http://127.0.0.1:{port}"
    _wait(lambda: port_open("127.0.0.1", port), 60, "the emulator")
    live = {
        "SYMBOLS": LIVE_SYMBOL,
        "INGESTOR_CRYPTOCOMPARE_BASE_URL": url,
        "INGESTOR_POLL_INTERVAL_S": "2",
        "INGESTOR_WARMUP_DAYS": "1",
        "INGESTOR_HTTP_TIMEOUT_S": "2",
    }
    pipe.start("live-ingestor", [sys.executable, "-m", "services.ingestor"], **live)
    time.sleep(minutes * 60 / 2)
    pipe.kill9("live-ingestor")
    report.kills.append("ingestor (live polling)")
    pipe.restart("live-ingestor")
    time.sleep(minutes * 60 / 2)
    httpx.post(f"{url}/_emulator/clock", json={"speed": 0}, timeout=10).raise_for_status()
    time.sleep(15)  # the aligned polls pick up the last closed minute
    params: dict[str, str | int] = {"fsym": LIVE_SYMBOL, "tsym": "USD", "limit": 2000}
    doc = httpx.get(f"{url}/data/v2/histominute", params=params, timeout=10).json()
    rows = doc["Data"]["Data"][:-1]  # the last row is the open minute
    # before its series begins the API answers all-zero candles: not candles of the feed
    return {(LIVE_SYMBOL, int(r["time"])) for r in rows if r["close"] > 0}


def _wait(ready: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.2)


async def wait_caught_up(pipe: Pipeline, bound_s: float) -> float | None:
    """Seconds until every group's committed offsets equal its input's true end, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < bound_s:
        done = True
        for service, group in GROUPS.items():
            if service not in pipe.procs:
                continue
            ends = true_ends(await read_topic(pipe.settings, INPUTS[service], idle_s=0.5))
            got = await committed(pipe.settings, group, INPUTS[service])
            done &= all(got.get(p, 0) >= end for p, end in ends.items())
        if done:
            return round(time.monotonic() - t0, 1)
        await asyncio.sleep(2)
    return None


def run_chaos(
    workdir: Path,
    days: float = 9.0,
    speed: float = 12_000.0,
    start: str = "2024-11-20",
    train_months: int = 3,
    keep: dict[str, list[Record]] | None = None,
    live: bool = True,
) -> ChaosReport:
    """The whole chaos run under ``workdir``; returns the report (never raises on a finding).
    ``keep`` receives every topic's records as read back (the mutation tests re-check them)."""
    t0 = int(pd.Timestamp(start, tz="UTC").timestamp())
    feed = workdir / "feed.parquet"
    train = workdir / "train.parquet"
    write_slice(feed, t0, t0 + int(days * 86400))
    write_slice(train, t0 - train_months * 30 * 86400, t0)
    report = ChaosReport()
    with MlflowServer(workdir / "mlflow") as mlflow, Pipeline(workdir, mlflow.uri) as pipe:
        try:
            pipe.train_champion(train)
        except RuntimeError as exc:
            report.problems.append(str(exc))
            return report
        for name in ("validator", "featurizer", "predictor"):
            pipe.service(name)
        replay = ["ingest", "replay", "--file", str(feed), "--symbol", "BTC", "--speed", str(speed)]
        pipe.volstream("ingestor", *replay)
        feed_s = days * 86400 / speed
        for i, name in enumerate(("ingestor", "validator", "featurizer", "predictor")):
            time.sleep(max(3.0, feed_s / 6) if i else max(5.0, feed_s / 8))
            pipe.kill9(name)
            report.kills.append(name)
            cmd = pipe.commands[name]
            pipe.restart(name, [*cmd, "--resume"] if name == "ingestor" else cmd)
        if pipe.wait("ingestor", 900) != 0:
            report.problems.append("the restarted replay failed; see log/ingestor.log")
        expected = expected_keys(feed, "BTC")
        if live:
            expected |= live_phase(pipe, report)
        report.catch_up_s = asyncio.run(wait_caught_up(pipe, bound_s=240))
        if report.catch_up_s is None:
            report.problems.append("a consumer group did not catch up within 240 s")
        topics = [TICKS_RAW, TICKS_CLEAN, TICKS_DLQ, FEATURES, PREDICTIONS]
        recs = {t: asyncio.run(read_topic(pipe.settings, t)) for t in topics}
        if keep is not None:
            keep.update(recs)
        report.counts["raw messages"] = len(recs[TICKS_RAW])
        check(
            expected,
            recs[TICKS_CLEAN],
            recs[TICKS_DLQ],
            recs[FEATURES],
            recs[PREDICTIONS],
            report,
        )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=10.0)
    parser.add_argument("--speed", type=float, default=12_000.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="volstream-chaos-") as tmp:
        report = run_chaos(Path(tmp), days=args.days, speed=args.speed)
        report.print()
        (Path(__file__).parent / "results").mkdir(exist_ok=True)
        (Path(__file__).parent / "results" / "chaos.json").write_bytes(
            orjson.dumps(report.__dict__, option=orjson.OPT_INDENT_2)
        )
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
