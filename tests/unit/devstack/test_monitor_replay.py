"""The replay evaluates the alerts as Prometheus does, with the threshold table's numbers."""

from __future__ import annotations

import numpy as np

from devstack.monitor_replay import Series, summarise
from monitoring.alerts import ALERTS_BY_NAME


def test_alerts_fire_after_their_for_duration_with_the_tables_thresholds() -> None:
    drift, acc = ALERTS_BY_NAME["DataDriftHigh"], ALERTS_BY_NAME["ModelAccuracyDegraded"]
    n = 240
    t = 1_700_000_000 + 60 * np.arange(n)
    ratio = np.full(n, np.nan)
    ratio[20:] = 0.0
    ratio[100:160] = drift.thresholds["ratio"] + 0.01  # an hour above the line
    ratio[170:173] = 1.0  # a spike shorter than ``for``
    qlike = np.full(n, acc.thresholds["ratio"] - 0.01)
    qlike[50:200] = acc.thresholds["ratio"] + 0.5
    out = summarise(Series(t, ratio, qlike, np.full(n, np.nan)))
    assert out["minutes"] == n and out["warm_minutes"] == n - 20
    d = out["alerts"]["DataDriftHigh"]
    held = 60 - round(drift.for_minutes)  # pending for ``for`` minutes, then firing
    assert d["firing_minutes"] == held
    assert d["episodes"] == [{"start": int(t[160 - held]), "end": int(t[159]) + 60}]
    a = out["alerts"]["ModelAccuracyDegraded"]
    assert a["firing_minutes"] == 150 - round(acc.for_minutes)
    assert out["drift_ratio"]["p50"] == 0.0


def test_a_gap_in_the_minutes_restarts_the_pending_period() -> None:
    drift = ALERTS_BY_NAME["DataDriftHigh"]
    minutes = round(drift.for_minutes)
    t = np.r_[np.arange(minutes), np.arange(minutes) + 100] * 60 + 1_700_000_000
    ratio = np.full(len(t), 1.0)
    out = summarise(Series(t, ratio, np.full(len(t), np.nan), np.full(len(t), np.nan)))
    assert out["alerts"]["DataDriftHigh"]["firing_minutes"] == 0
