"""Peak resident memory of named process groups, read from Linux ``/proc``.

Each service in :class:`bench.harness.Pipeline` runs in its own session, so its process group id
is its PID and any process it forks stays in the group. :class:`PeakRss` samples ``VmHWM`` (the
kernel's high-water mark of resident memory, per process) of every member in a background thread;
a group's peak is the sum of its members' high-water marks (an upper bound when members peaked at
different times; exact for the single-process services). A process that exits between two samples
keeps its last sampled mark, so keep the interval short next to the process's life.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

PROC = Path("/proc")


def hwm_kb(pid: int, proc: Path = PROC) -> int | None:
    """``VmHWM`` of ``pid`` in kB, or None when the process is gone (or a kernel thread)."""
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def members(pgids: Iterable[int], proc: Path = PROC) -> dict[int, set[int]]:
    """PIDs per process group, for the groups in ``pgids`` (one pass over ``/proc``)."""
    out: dict[int, set[int]] = {pgid: set() for pgid in pgids}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) in out:
            out[int(fields[2])].add(int(entry.name))
    return out


class PeakRss:
    """Samples the peak RSS of process groups named by ``groups()`` (name -> pgid) until stopped.

    ``groups`` is called at every sample, so processes started later are picked up.
    """

    def __init__(self, groups: Callable[[], dict[str, int]], interval_s: float = 0.5) -> None:
        self.groups = groups
        self.interval_s = interval_s
        self._hwm: dict[str, dict[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def sample(self) -> None:
        """Read every member's high-water mark once."""
        groups = self.groups()
        pids = members(groups.values())
        for name, pgid in groups.items():
            seen = self._hwm.setdefault(name, {})
            for pid in pids[pgid] | {pgid}:
                kb = hwm_kb(pid)
                if kb is not None:
                    seen[pid] = max(kb, seen.get(pid, 0))

    def peaks_mb(self) -> dict[str, float]:
        """Peak RSS per name in MB (sum of its members' high-water marks)."""
        return {name: sum(pids.values()) / 1024 for name, pids in self._hwm.items() if pids}

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> PeakRss:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def cpu_s(pid: int, proc: Path = PROC) -> float:
    """User + system CPU seconds of ``pid`` so far (0 when it is gone).

    >>> cpu_s(0, Path("/nonexistent"))
    0.0
    """
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()  # field 3 (state) is fields[0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu_s(groups: dict[str, int], proc: Path = PROC) -> dict[str, float]:
    """CPU seconds so far per named process group (its members now alive, summed)."""
    pids = members(groups.values(), proc)
    return {name: sum(cpu_s(p, proc) for p in pids[g] | {g}) for name, g in groups.items()}


class CpuWatch:
    """CPU seconds each named process group spends while watched (sampled every
    ``interval_s``, so a process that exits meanwhile keeps what it used until its last sample).

    Every sample is kept with its wall-clock time, so :meth:`used_s` can also answer for a window
    inside the watch (a benchmark's clock that starts at its first record and stops at its last).
    """

    def __init__(self, groups: Callable[[], dict[str, int]], interval_s: float = 0.5) -> None:
        self.groups = groups
        self.interval_s = interval_s
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-watch", daemon=True)

    def sample(self) -> None:
        now = time.time()
        for name, seconds in group_cpu_s(self.groups()).items():
            self._first.setdefault(name, 0.0)  # started after the watch: all its CPU counts
            self._last[name] = max(seconds, self._last.get(name, 0.0))
        self._samples.append((now, dict(self._last)))

    def used_s(self, since: float | None = None, until: float | None = None) -> dict[str, float]:
        """CPU seconds per name since the watch started (since its start for later ones), or
        between the samples nearest to ``since`` and ``until`` (``time.time()`` values; to
        within one sampling interval)."""
        if since is None and until is None:
            return {name: self._last[name] - self._first.get(name, 0.0) for name in self._last}
        start = self._at(since) if since is not None else self._first
        end = self._at(until) if until is not None else self._last
        return {name: end[name] - start.get(name, self._first.get(name, 0.0)) for name in end}

    def _at(self, t: float) -> dict[str, float]:
        """The sample nearest to ``t`` (the watch's start when none is)."""
        if not self._samples:
            return dict(self._first)
        return min(self._samples, key=lambda s: abs(s[0] - t))[1]

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> CpuWatch:
        self._first = group_cpu_s(self.groups())
        self._samples = [(time.time(), dict(self._first))]
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def by_service(peaks: dict[str, float], service: Callable[[str], str]) -> dict[str, float]:
    """The largest peak per service, when several named processes run the same service.

    >>> by_service({"warm-BTC": 90.0, "warm-ETH": 95.0, "validator": 80.0},
    ...            lambda n: "ingestor" if n.startswith("warm-") else n)
    {'ingestor': 95.0, 'validator': 80.0}
    """
    out: dict[str, float] = {}
    for name, mb in peaks.items():
        key = service(name)
        out[key] = max(mb, out.get(key, 0.0))
    return out
