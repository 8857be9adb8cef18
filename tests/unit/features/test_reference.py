"""Every feature against a plain-Python reference of its documented definition, with gaps.

The reference reads candles from a ``{time: candle}`` dict minute by minute: no grid, no numpy
windows, no hourly aggregates. It is slow, so it checks a few rows of a gappy random walk.
"""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from services.common.features import FEATURE_NAMES, featurize_many

COVER = 0.8
LN2 = math.log(2)


def _walk(minutes: int = 8 * 1440, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 8e-4, minutes)))
    close[3000:3100] = close[2999]  # a flat stretch: zero returns
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 5e-4, minutes))
    frame = pd.DataFrame(
        {
            "time": 1_700_000_040 - 1_700_000_040 % 3600 + 60 * np.arange(minutes),
            "open": open_,
            "high": np.maximum(open_, close) * (1 + spread),
            "low": np.minimum(open_, close) * (1 - spread),
            "close": close,
            "volumefrom": 1.0,
            "volumeto": rng.lognormal(15, 1, minutes),
        }
    )
    gone = set(rng.choice(minutes, minutes // 30, replace=False)) | set(range(9000, 9090))
    return frame.drop(index=sorted(gone)).reset_index(drop=True)


class Reference:
    def __init__(self, frame: pd.DataFrame) -> None:
        self.c = {int(r.time): r for r in frame.itertuples()}

    def ret(self, s: int) -> float | None:
        a, b = self.c.get(s), self.c.get(s - 60)
        return math.log(a.close / b.close) if a and b else None

    def sum_over(self, t: int, minutes: int, term) -> tuple[float, int]:
        values = [term(s) for s in range(t - 60 * (minutes - 1), t + 1, 60)]
        present = [v for v in values if v is not None]
        return sum(present), len(present)

    def scaled(self, t: int, minutes: int, term, per: float) -> float:
        total, n = self.sum_over(t, minutes, term)
        return total * per / n if n >= COVER * minutes else math.nan

    def bar(self, fn):
        return lambda s: fn(self.c[s]) if s in self.c else None

    def features(self, t: int) -> dict[str, float]:
        f: dict[str, float] = {}
        r2 = lambda s: None if self.ret(s) is None else self.ret(s) ** 2  # noqa: E731
        for w in (5, 15, 30, 60, 240, 1440):
            f[f"rv_{w}m"] = math.sqrt(self.scaled(t, w, r2, w))
        for h in (1, 4, 24):
            f[f"har_{h}h"] = self.scaled(t, 60 * h, r2, 60)
        since = t - t % 3600 - 167 * 3600
        f["har_168h"] = self.scaled(t, (t - since) // 60 + 1, r2, 60)
        pk = self.bar(lambda b: math.log(b.high / b.low) ** 2 / (4 * LN2))
        gk = self.bar(
            lambda b: (
                0.5 * math.log(b.high / b.low) ** 2
                - (2 * LN2 - 1) * math.log(b.close / b.open) ** 2
            )
        )
        rs = self.bar(
            lambda b: (
                math.log(b.high / b.close) * math.log(b.high / b.open)
                + math.log(b.low / b.close) * math.log(b.low / b.open)
            )
        )
        for w in (15, 60, 240):
            f[f"pk_{w}m"] = math.sqrt(self.scaled(t, w, pk, w))
            f[f"gk_{w}m"] = math.sqrt(max(self.scaled(t, w, gk, w), 0.0))
            f[f"rs_{w}m"] = math.sqrt(self.scaled(t, w, rs, w))
        self._jumps(t, f, r2)
        for lag in (1, 5, 15, 60, 1440):
            past = self.c.get(t - 60 * lag)
            f[f"ret_{lag}m"] = math.log(self.c[t].close / past.close) if past else math.nan
        self._seasonal(t, f, r2)
        self._volume(t, f)
        self._momentum(t, f)
        self._new_york(t, f)
        for name in [n for n in f if n.startswith(("rv_", "har_", "pk_", "gk_", "rs_"))]:
            f[f"l{name}"] = math.log(f[name]) if f[name] > 0 else math.nan
        return f

    def _jumps(self, t: int, f: dict[str, float], r2) -> None:
        """Downside share of RV, bipower variation and the jump ratio over 60 and 240 minutes."""
        neg = lambda s: None if (r := self.ret(s)) is None else (r * r if r < 0 else 0.0)  # noqa: E731

        def bp(s: int) -> float | None:
            a, b = self.ret(s), self.ret(s - 60)
            return None if a is None or b is None else abs(a) * abs(b)

        for w in (60, 240):
            var = self.scaled(t, w, r2, w)
            total = self.sum_over(t, w, r2)[0]
            share = self.sum_over(t, w, neg)[0] / total if total > 0 else math.nan
            f[f"rsn_share_{w}m"] = share if not math.isnan(var) else math.nan
            bpv = math.pi / 2 * self.scaled(t, w, bp, w)
            f[f"lbpv_{w}m"] = 0.5 * math.log(bpv) if bpv > 0 else math.nan
            f[f"jump_{w}m"] = math.log(var / bpv) if var > 0 and bpv > 0 else math.nan

    def _seasonal(self, t: int, f: dict[str, float], r2) -> None:
        """Mean variance of the clock hour holding t + 30 min on each of the 6 previous days."""
        hour = (t + 1800) - (t + 1800) % 3600
        per_day = []
        for day in range(1, 7):
            start = hour - day * 86400
            total, n = self.sum_over(start + 59 * 60, 60, r2)
            if n >= COVER * 60:
                per_day.append(total * 60 / n)
        mean = sum(per_day) / len(per_day) if len(per_day) >= COVER * 6 else math.nan
        f["lsea_6d"] = 0.5 * math.log(mean) if mean > 0 else math.nan
        f["sea_ratio_6d"] = f["lsea_6d"] - 0.5 * math.log(f["har_24h"])

    def _new_york(self, t: int, f: dict[str, float]) -> None:
        """New York wall-clock time of the forecast window's middle, t + 30 min."""
        local = datetime.fromtimestamp(t + 1800, tz=ZoneInfo("America/New_York"))
        hour = local.hour + local.minute / 60
        f["nyh_sin"], f["nyh_cos"] = (
            math.sin(2 * math.pi * hour / 24),
            math.cos(2 * math.pi * hour / 24),
        )
        f["ny_weekday"] = 1.0 if local.weekday() < 5 else 0.0
        f["ny_open_min"] = local.hour * 60 + local.minute - (9 * 60 + 30)

    def _volume(self, t: int, f: dict[str, float]) -> None:
        qv = self.bar(lambda b: b.volumeto)
        hour = self.scaled(t, 60, qv, 60)
        f["lqv_60m"] = math.log1p(hour)
        f["qv_ratio_24h"] = hour / self.scaled(t, 1440, qv, 60)
        logs = [
            math.log1p(b.volumeto) for s in range(t - 1439 * 60, t + 1, 60) if (b := self.c.get(s))
        ]
        f["qv_z_24h"] = (logs[-1] - np.mean(logs)) / np.std(logs, ddof=1)

    def _momentum(self, t: int, f: dict[str, float]) -> None:
        fast = slow = None
        signal = gain = loss = 0.0
        for s in range(t - 299 * 60, t + 1, 60):
            if s not in self.c:
                continue
            x = self.c[s].close
            fast = x if fast is None else fast + 2 / 13 * (x - fast)
            slow = x if slow is None else slow + 2 / 27 * (x - slow)
            signal += 2 / 10 * (fast - slow - signal)
            if (d := self.c[s].close - self.c[s - 60].close if s - 60 in self.c else None) is None:
                continue
            gain += (max(d, 0) - gain) / 14
            loss += (max(-d, 0) - loss) / 14
        close = self.c[t].close
        values = {
            "rsi_14": 100 * gain / (gain + loss),
            "macd": (fast - slow) / close,
            "macd_signal": signal / close,
            "macd_hist": (fast - slow - signal) / close,
        }
        covered = sum(s in self.c for s in range(t - 299 * 60, t + 1, 60)) >= COVER * 300
        f.update({k: v if covered else math.nan for k, v in values.items()})


@pytest.fixture(scope="module")
def walk() -> pd.DataFrame:
    return _walk()


def test_every_feature_matches_the_reference(walk):
    out = featurize_many(walk).set_index("time")
    ref = Reference(walk)
    times = out.index.to_numpy()
    picks = [times[-1], times[-1] - 7, 9090 * 60 + times[0], 3050 * 60 + times[0]]
    picks += list(np.random.default_rng(3).choice(times[times > times[0] + 1440 * 60], 6))
    checked = 0
    for t in [int(p) for p in picks if p in out.index]:
        expected = ref.features(t)
        for name, value in expected.items():
            got = out.at[t, name]
            assert (math.isnan(value) and math.isnan(got)) or got == pytest.approx(
                value, rel=1e-9, abs=1e-15
            ), (t, name, got, value)
            checked += 1
    assert checked >= 6 * 50
    assert {n for n in FEATURE_NAMES if not n.startswith(("hod", "dow"))} == set(expected)
