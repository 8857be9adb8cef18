"""Live mode end to end: the emulator (real data, real faults) -> ingestor -> real broker.

Both symbols run at once; each must land on its own key, with the emulator's closed candles
covered without gap, and no candle repeated across batches except duplicates the emulator injected.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from devstack.emulator_core import FAULT_KINDS
from services.common.settings import Settings
from tests.integration.test_ingestor_support import (
    EmulatorProc,
    checkpoint,
    emulator,
    run_consume,
    spawn,
    stop,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SYMBOLS = ("BTC", "ETH")
FIELDS = ("time", "open", "high", "low", "close", "volumefrom", "volumeto")


def ingestor_env(service_env: dict[str, str], emu: EmulatorProc) -> dict[str, str]:
    return {
        **service_env,
        "INGESTOR_CRYPTOCOMPARE_BASE_URL": emu.url,
        "SYMBOLS": ",".join(SYMBOLS),
        "INGESTOR_POLL_INTERVAL_S": "0.3",
        "INGESTOR_POLL_LIMIT": "5",
        "INGESTOR_HTTP_TIMEOUT_S": "1.0",
        "INGESTOR_RETRY_ATTEMPTS": "3",
        "INGESTOR_RETRY_BUDGET_S": "3",
        "INGESTOR_RETRY_INITIAL_S": "0.05",
        "INGESTOR_RETRY_MAX_S": "0.5",
    }


def freeze_and_catch_up(emu: EmulatorProc, settings: Settings, proc) -> int:
    """Stop the simulated clock; wait until every symbol's checkpoint reaches the last minute
    the API shows as closed. Returns the first minute it does not show.

    A minute shows ``lag_s`` after it ends (the emulator's availability lag): a clock frozen
    within ``lag_s`` of a minute's end never shows that minute, so "closed" is counted from
    ``now - lag_s``, not from ``now``."""
    clock = emu.call("POST", "/_emulator/clock", json={"speed": 0})
    current = int(clock["now"] - clock["lag_s"]) // 60 * 60
    wait_until(
        lambda: all(checkpoint(settings, s) == current - 60 for s in SYMBOLS),
        90,
        "the ingestor catching up",
        proc,
    )
    return current


def by_symbol(batches: list, symbol: str) -> list[dict]:
    mine = [(k, p, b) for k, p, b in batches if b.symbol == symbol]
    assert {k for k, _, _ in mine} == {symbol}, "each symbol on its own key"
    assert len({p for _, p, _ in mine}) == 1
    return [c for _, _, b in mine for c in b.candles]


def complete(rows: list[dict]) -> list[dict]:
    return [r for r in rows if all(isinstance(r.get(f), int | float) for f in FIELDS)]


def test_every_fault_kind_during_a_run(
    settings: Settings, service_env: dict[str, str], tmp_path: Path
) -> None:
    with emulator(tmp_path, service_env, "--speed", "60") as emu:
        proc = spawn(["services.ingestor"], ingestor_env(service_env, emu), tmp_path / "ing.log")
        try:
            wait_until(lambda: all(checkpoint(settings, s) for s in SYMBOLS), 90, "start", proc)
            faults = {"probabilities": dict.fromkeys(FAULT_KINDS, 0.15), "seed": 3, "slow_s": 1.5}
            emu.call("POST", "/_emulator/faults", json=faults)
            wait_until(
                lambda: set(emu.call("GET", "/_emulator/state")["injected"]) == set(FAULT_KINDS),
                120,
                "every fault kind injected",
                proc,
            )
            emu.call("DELETE", "/_emulator/faults")  # the faults stop
            current = freeze_and_catch_up(emu, settings, proc)
            assert proc.poll() is None, "the ingestor never exits"
            duplicated = {tuple(d) for d in emu.call("GET", "/_emulator/state")["duplicated"]}
            served = {s: emu.closed_rows(s) for s in SYMBOLS}
        finally:
            rc = stop(proc)
    assert rc == 0, (tmp_path / "ing.log").read_text()[-3000:]
    batches = run_consume(settings)

    def rows(symbol: str) -> list[dict]:
        return by_symbol(batches, symbol)

    for symbol in SYMBOLS:
        # the warm-up published a week before the faults; compare the window the API still
        # serves (its newest 2,000 minutes)
        first = max(min(r["time"] for r in served[symbol]), min(c["time"] for c in rows(symbol)))
        counts = Counter(r["time"] for r in complete(rows(symbol)) if r["time"] >= first)
        expected = {r["time"]: r for r in served[symbol] if r["time"] >= first}
        assert sorted(counts) == sorted(expected) and max(expected) == current - 60, "no gap"
        assert {t for t, n in counts.items() if n > 1} <= {t for s, t in duplicated if s == symbol}
        for row in complete(rows(symbol)):
            if row["time"] >= first:
                assert row == expected[row["time"]], "published exactly as served"


def test_kill_9_and_restart_resumes_without_gap_or_repeat(
    settings: Settings, service_env: dict[str, str], tmp_path: Path
) -> None:
    with emulator(tmp_path, service_env, "--speed", "120") as emu:
        env = ingestor_env(service_env, emu)
        first = spawn(["services.ingestor"], env, tmp_path / "ing1.log")
        second = None
        try:
            wait_until(lambda: all(checkpoint(settings, s) for s in SYMBOLS), 90, "start", first)
            before = {s: checkpoint(settings, s) for s in SYMBOLS}
            wait_until(
                lambda: all(checkpoint(settings, s) > before[s] + 300 for s in SYMBOLS),
                60,
                "a few polls",
                first,
            )
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
            killed_at = {s: checkpoint(settings, s) for s in SYMBOLS}
            second = spawn(["services.ingestor"], env, tmp_path / "ing2.log")
            # the outage (start-up included) spans more minutes than one poll asks for
            wait_until(
                lambda: all(checkpoint(settings, s) > killed_at[s] + 600 for s in SYMBOLS),
                90,
                "the restarted ingestor catching up",
                second,
            )
            current = freeze_and_catch_up(emu, settings, second)
        finally:
            stop(first, signal.SIGKILL)
            rc = stop(second) if second else None
    assert rc == 0
    batches = run_consume(settings)
    for symbol in SYMBOLS:
        times = [r["time"] for r in by_symbol(batches, symbol)]
        assert times == list(range(times[0], current, 60)), "no gap, no repeat, in order"
