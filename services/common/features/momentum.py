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
BLOCK_ROWS = 128
"""Rows per product-and-sum: keeps the (rows, lookback) buffers in cache (measured on a 2,000-row
batch: 64 rows 1.6, 128 rows 1.4, 256 rows 1.9, 512 rows 2.3 us per row)."""


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
    """MACD (centred), signal, RSI gain and loss for each row of a (rows, lookback + 1) window.

    Block by block, in three buffers reused from block to block: a block's temporaries stay in
    cache and nothing is allocated per operation (a fresh (rows, lookback) array per operation
    made this ~9 us per row of a 2,000-row batch, ~1.5 now). A gap-free block runs
    :func:`_linear`'s operations in its order, so every value is bit-identical; a block with a
    gap goes through :func:`_block`."""
    rows, size = len(window), window.shape[1] - 1
    out = np.empty((4, rows))
    w_macd, w_signal, w_rsi = _weights(size, alphas, rsi_alpha)
    centred, diffs, buf = (np.empty((min(BLOCK_ROWS, rows), size)) for _ in range(3))
    for start in range(0, rows, BLOCK_ROWS):
        win = window[start : start + BLOCK_ROWS]
        n, block = len(win), out[:, start : start + BLOCK_ROWS]
        c, d, b = centred[:n], diffs[:n], buf[:n]
        np.subtract(win[:, 1:], win[:, -1:], out=c)  # _block's centred
        np.subtract(win[:, 1:], win[:, :-1], out=d)  # np.diff
        if np.isnan(d).any():
            block[:] = _block(win, alphas, rsi_alpha)
            continue
        np.multiply(c, w_macd, out=b)
        block[0] = b.sum(axis=-1)
        np.multiply(c, w_signal, out=b)
        block[1] = b.sum(axis=-1)
        up = np.maximum(d, 0.0, out=b)
        loss = np.subtract(up, d, out=d)
        block[2] = np.multiply(up, w_rsi, out=up).sum(axis=-1)
        block[3] = np.multiply(loss, w_rsi, out=loss).sum(axis=-1)
    return out[0], out[1], out[2], out[3]
