"""RSI and MACD over a fixed trailing window, so they never depend on where a stream started.

Each row's window holds ``EMA_LOOKBACK + 1`` closes (the first only feeds the first change). The
EMAs are seeded at the window's first present close and a missing minute leaves every state
unchanged. Closes are centred on the row's own close first, so a flat window gives exact zeros.
RSI is Wilder's (alpha = 1/14) on gains and losses started at 0: their ratio does not depend on
the start value.

A window without gaps is a fixed linear filter: its weights come from running the very same
recurrence on unit vectors, and each row is then one product-and-sum (fast in batch and for
small micro-batches alike). A window with gaps runs the recurrence itself::

    >>> closes = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, np.nan, 4.0]])
    >>> macd, signal, gain, loss = ema_states(closes, alphas=(0.5, 0.25, 0.5), rsi_alpha=0.5)
    >>> bool(np.allclose(macd[0], macd[1])), float(loss[0]), float(gain[0])
    (False, 0.0, 0.875)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from services.common.features.frame import FloatArray

States = tuple[FloatArray, FloatArray, FloatArray, FloatArray]
BLOCK_ROWS = 256
"""Rows per product-and-sum: keeps the (rows, lookback) temporaries in cache."""


def _step(state: FloatArray, x: FloatArray, alpha: float, have: np.ndarray) -> None:
    """``state += alpha * (x - state)`` in place where ``have``; elsewhere unchanged."""
    step = np.subtract(x, state)
    step *= alpha
    np.add(state, step, out=state, where=have)


def _recurrence(
    centred: FloatArray, diffs: FloatArray, alphas: tuple[float, float, float], rsi_alpha: float
) -> States:
    """MACD, signal, RSI gain and loss by stepping through the window (gaps allowed)."""
    a_fast, a_slow, a_sig = alphas
    rows = len(centred)
    have = ~np.isnan(centred)
    fast = centred[np.arange(rows), np.argmax(have, axis=1)]
    slow, signal = fast.copy(), np.zeros(rows)
    gain, loss = np.zeros(rows), np.zeros(rows)
    for k in range(centred.shape[1]):
        _step(fast, centred[:, k], a_fast, have[:, k])
        _step(slow, centred[:, k], a_slow, have[:, k])
        _step(signal, fast - slow, a_sig, have[:, k])
        up, moved = np.maximum(diffs[:, k], 0.0), ~np.isnan(diffs[:, k])
        _step(gain, up, rsi_alpha, moved)
        _step(loss, up - diffs[:, k], rsi_alpha, moved)
    return fast - slow, signal, gain, loss


@lru_cache(maxsize=8)
def _weights(
    size: int, alphas: tuple[float, float, float], rsi_alpha: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Weights of a gap-free window: the recurrence run on unit vectors (it is linear there)."""
    eye, zeros = np.eye(size), np.zeros((size, size))
    macd, signal, _, _ = _recurrence(eye, zeros, alphas, rsi_alpha)
    _, _, gain, _ = _recurrence(zeros, eye, alphas, rsi_alpha)
    return macd, signal, gain


def _linear(
    centred: FloatArray, diffs: FloatArray, alphas: tuple[float, float, float], rsi_alpha: float
) -> States:
    """Gap-free rows: each state is one weighted sum over the window."""
    w_macd, w_signal, w_rsi = _weights(centred.shape[1], alphas, rsi_alpha)
    up = np.maximum(diffs, 0.0)
    return (
        (centred * w_macd).sum(axis=-1),
        (centred * w_signal).sum(axis=-1),
        (up * w_rsi).sum(axis=-1),
        ((up - diffs) * w_rsi).sum(axis=-1),
    )


def _block(window: FloatArray, alphas: tuple[float, float, float], rsi_alpha: float) -> FloatArray:
    """The four states of a block of rows, as a (4, rows) array."""
    centred = window[:, 1:] - window[:, -1:]
    diffs = np.diff(window, axis=1)
    complete = ~np.isnan(diffs).any(axis=1)
    out = np.empty((4, len(window)))
    out[:, complete] = _linear(centred[complete], diffs[complete], alphas, rsi_alpha)
    if not complete.all():
        gappy = ~complete
        out[:, gappy] = _recurrence(centred[gappy], diffs[gappy], alphas, rsi_alpha)
    return out


def ema_states(window: FloatArray, alphas: tuple[float, float, float], rsi_alpha: float) -> States:
    """MACD (centred), signal, RSI gain and loss for each row of a (rows, lookback + 1) window."""
    out = np.empty((4, len(window)))
    for start in range(0, len(window), BLOCK_ROWS):
        out[:, start : start + BLOCK_ROWS] = _block(
            window[start : start + BLOCK_ROWS], alphas, rsi_alpha
        )
    return out[0], out[1], out[2], out[3]
