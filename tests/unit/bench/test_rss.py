"""Peak RSS of process groups from /proc (Linux), on a real short-lived child."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_pipeline import service_of
from bench.rss import PeakRss, by_service, hwm_kb, members

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")

GROW = "x = bytearray(64 * 2**20); import time; time.sleep(0.6)"


def test_hwm_of_this_process_and_of_no_process() -> None:
    assert (hwm_kb(os.getpid()) or 0) > 1000
    assert hwm_kb(2**22 + 12345) is None


def test_members_finds_a_child_in_its_own_session() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(5)"], start_new_session=True
    )
    try:
        assert members([child.pid])[child.pid] == {child.pid}
    finally:
        child.kill()
        child.wait()


def test_peak_rss_sees_the_peak_of_a_child_that_exited() -> None:
    child = subprocess.Popen([sys.executable, "-c", GROW], start_new_session=True)
    with PeakRss(lambda: {"grow": child.pid}, interval_s=0.05) as peaks:
        child.wait(10)
    assert peaks.peaks_mb()["grow"] > 64


def test_replays_count_as_the_ingestor() -> None:
    names = {"replay": 90.0, "warm-BTC": 95.0, "steady-SOL": 80.0, "validator": 70.0}
    assert by_service(names, service_of) == {"ingestor (replay)": 95.0, "validator": 70.0}


def test_cpu_watch_counts_what_each_group_spends_while_watched() -> None:
    import subprocess
    import sys
    import time

    from bench.rss import CpuWatch

    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < {}: pass"
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"],
                            start_new_session=True)  # fmt: skip
    groups = {"idle": idle.pid}
    with CpuWatch(lambda: groups, interval_s=0.05) as watch:
        busy = subprocess.Popen([sys.executable, "-c", spin.format(0.4)], start_new_session=True)
        groups["busy"] = busy.pid  # started after the watch: all its CPU counts
        time.sleep(0.2)
        while busy.poll() is None:
            time.sleep(0.02)
        idle.kill()
        idle.wait()
    used = watch.used_s()
    assert used["busy"] >= 0.2  # sampled every 50 ms: at most one interval lost at its exit
    assert used["idle"] < 0.2


def test_cpu_watch_answers_for_a_window_inside_the_watch() -> None:
    """The replay's clock starts at its first record, after the watch started: CPU spent
    outside a window is not the window's."""
    import subprocess
    import sys
    import time

    from bench.rss import CpuWatch

    spin_then_sleep = "import time\nt = time.process_time()\n"
    spin_then_sleep += "while time.process_time() - t < 0.4: pass\ntime.sleep(0.8)"
    groups: dict[str, int] = {}
    with CpuWatch(lambda: groups, interval_s=0.05) as watch:
        began = time.time()
        busy = subprocess.Popen([sys.executable, "-c", spin_then_sleep], start_new_session=True)
        groups["busy"] = busy.pid
        busy.wait()
        ended = time.time()
    assert watch.used_s(ended - 0.4, ended)["busy"] < 0.1  # asleep all along
    assert watch.used_s(began, ended)["busy"] >= 0.3
    assert watch.used_s()["busy"] >= 0.3
