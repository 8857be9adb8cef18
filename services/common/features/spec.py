"""The feature set's definition: windows, parameters, names, warm-up and version.

Everything a model depends on is declared here or in :mod:`.kernel`, and both are hashed into
:data:`FEATURE_VERSION`, so any change of definition changes the version::

    >>> FEATURE_VERSION.startswith(FEATURE_SET_NAME + "-")
    True
    >>> FEATURE_NAMES[:3]
    ('rv_5m', 'rv_15m', 'rv_30m')
    >>> WARMUP_MINUTES, HISTORY_MINUTES
    (8064, 10140)
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

FEATURE_SET_NAME = "rv60"
"""The feature set: 1-minute candles in, features for a 60-minute-ahead volatility forecast."""

MINUTE = 60
HOUR_MINUTES = 60

HORIZON_MINUTES = 60
"""The target: realized volatility of minutes t+1..t+H. Read by the trainer (labels) and the
predictor (when a forecast resolves); one constant, so they cannot disagree."""

RV_WINDOWS = (5, 15, 30, 60, 240, 1440)
"""Realized volatility windows (minutes)."""
HAR_HOURS = (1, 4, 24, 168)
"""HAR components (hours); 168 h is summed from clock-hour aggregates."""
SEASON_DAYS = 6
"""The same clock hour on this many previous days (all within the week of hour aggregates)."""
RANGE_WINDOWS = (15, 60, 240)
"""Parkinson, Garman-Klass and Rogers-Satchell windows (minutes)."""
RANGE_ESTIMATORS = ("pk", "gk", "rs")
JUMP_WINDOWS = (60, 240)
"""Semivariance share, bipower variation and jump ratio windows (minutes)."""
RETURN_LAGS = (1, 5, 15, 60, 1440)
"""Log-return horizons (minutes)."""
VOLUME_WINDOW = 60
VOLUME_BASELINE = 1440
"""Quote volume: summed over 60 minutes, compared with its mean over 1440 minutes."""
RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
EMA_LOOKBACK = 300
"""RSI and MACD run over exactly this many trailing minutes, seeded at the window's start, so
their value does not depend on where a stream started ((25/27)^300 < 1e-10)."""
MARKET_TZ = "America/New_York"
MARKET_OPEN_MINUTE = 9 * 60 + 30
"""US hours: crypto volatility peaks at US macro releases (08:30 New York) and the equity open
(09:30), which move by an hour in UTC at each daylight-saving change; the ``ny_*`` calendar
features give the forecast window's middle in New York time."""
MIN_COVERAGE = 0.8
"""A window feature is undefined when fewer than this fraction of its minutes are present."""

LONG_HAR_HOURS = HAR_HOURS[-1]
LOOKBACK_MINUTES = max(*RV_WINDOWS, *RETURN_LAGS, VOLUME_BASELINE, EMA_LOOKBACK) + 1
"""Minute slots a row needs before it (the oldest return needs the close before its window)."""
WARMUP_MINUTES = math.ceil(MIN_COVERAGE * LONG_HAR_HOURS * HOUR_MINUTES)
"""A row is warm once this many minutes of history precede it: every window then meets
``MIN_COVERAGE``, the same rule that defines a window with gaps, so each feature is defined.
Until a stream has run a whole week, the 168 h component is the mean over the hours it has
(at least 80 % of them), exactly as for a week with an outage."""
HISTORY_MINUTES = LONG_HAR_HOURS * HOUR_MINUTES + HOUR_MINUTES
"""Replay this many minutes of candles into a fresh state to rebuild it exactly (and warm)."""


def _names() -> tuple[str, ...]:
    names = [f"rv_{w}m" for w in RV_WINDOWS]
    names += [f"lrv_{w}m" for w in RV_WINDOWS]
    names += [f"har_{h}h" for h in HAR_HOURS]
    names += [f"lhar_{h}h" for h in HAR_HOURS]
    names += [f"lsea_{SEASON_DAYS}d", f"sea_ratio_{SEASON_DAYS}d"]
    for est in RANGE_ESTIMATORS:
        names += [f"{est}_{w}m" for w in RANGE_WINDOWS]
        names += [f"l{est}_{w}m" for w in RANGE_WINDOWS]
    for name in ("rsn_share", "lbpv", "jump"):
        names += [f"{name}_{w}m" for w in JUMP_WINDOWS]
    names += [f"ret_{w}m" for w in RETURN_LAGS]
    names += ["lqv_60m", "qv_ratio_24h", "qv_z_24h"]
    names += [f"rsi_{RSI_PERIOD}", "macd", "macd_signal", "macd_hist"]
    names += ["hod_sin", "hod_cos", "dow_sin", "dow_cos"]
    names += ["nyh_sin", "nyh_cos", "ny_weekday", "ny_open_min"]
    return tuple(names)


FEATURE_NAMES: tuple[str, ...] = _names()
"""Column order used by models."""


def _memory() -> dict[str, int]:
    memory = {f"{p}rv_{w}m": w for w in RV_WINDOWS for p in ("", "l")}
    memory |= {f"{p}har_{h}h": h * HOUR_MINUTES for h in HAR_HOURS for p in ("", "l")}
    memory |= {f"lsea_{SEASON_DAYS}d": SEASON_DAYS * 1440, f"sea_ratio_{SEASON_DAYS}d": 1440}
    for e in RANGE_ESTIMATORS:
        memory |= {f"{p}{e}_{w}m": w for w in RANGE_WINDOWS for p in ("", "l")}
    memory |= {f"{k}_{w}m": w for w in JUMP_WINDOWS for k in ("rsn_share", "lbpv", "jump")}
    memory |= {f"ret_{w}m": w for w in RETURN_LAGS}
    memory |= {"lqv_60m": VOLUME_WINDOW, "qv_ratio_24h": VOLUME_BASELINE}
    memory |= {"qv_z_24h": VOLUME_BASELINE, f"rsi_{RSI_PERIOD}": RSI_PERIOD, "macd": MACD_SLOW}
    memory |= {"macd_signal": MACD_SLOW + MACD_SIGNAL, "macd_hist": MACD_SLOW + MACD_SIGNAL}
    memory |= {"hod_sin": 1440, "hod_cos": 1440, "dow_sin": 7 * 1440, "dow_cos": 7 * 1440}
    memory |= {"nyh_sin": 1440, "nyh_cos": 1440, "ny_weekday": 7 * 1440, "ny_open_min": 1440}
    return {n: memory[n] for n in FEATURE_NAMES}


FEATURE_MEMORY_MINUTES: dict[str, int] = _memory()
"""How many minutes each feature summarises (its window, lag, period or calendar cycle).

Consecutive values of a feature overlap for about this long, so a sample of a few of its
memories holds few independent values: drift monitoring uses it to judge which features a
window can assess.

    >>> FEATURE_MEMORY_MINUTES["rv_60m"], FEATURE_MEMORY_MINUTES["har_168h"]
    (60, 10080)
"""


def _spec() -> dict[str, object]:
    return {
        "name": FEATURE_SET_NAME,
        "names": FEATURE_NAMES,
        "rv": RV_WINDOWS,
        "har": HAR_HOURS,
        "season_days": SEASON_DAYS,
        "range": RANGE_WINDOWS,
        "range_estimators": RANGE_ESTIMATORS,
        "jumps": JUMP_WINDOWS,
        "ret": RETURN_LAGS,
        "volume": (VOLUME_WINDOW, VOLUME_BASELINE),
        "rsi": RSI_PERIOD,
        "macd": (MACD_FAST, MACD_SLOW, MACD_SIGNAL),
        "ema_lookback": EMA_LOOKBACK,
        "coverage": MIN_COVERAGE,
        "warmup": WARMUP_MINUTES,
        "market": (MARKET_TZ, MARKET_OPEN_MINUTE),
    }


def _version() -> str:
    """Name plus a short hash of the spec and of the numeric kernel's source."""
    digest = hashlib.sha256(json.dumps(_spec(), sort_keys=True).encode())
    for module in ("kernel.py", "frame.py", "momentum.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    return f"{FEATURE_SET_NAME}-{digest.hexdigest()[:12]}"


FEATURE_VERSION = _version()
"""Name plus a hash of the definitions (spec and kernel source)."""
