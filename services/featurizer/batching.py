"""Adaptive micro-batches from a Faust stream: "take until idle".

Faust's ``Stream.take_events(max_, within)`` yields when the buffer holds ``max_`` events or when
``within`` has passed, so at a steady trickle every event waits for the whole window (a live
candle waited 0.1 s on average with ``within=0.2``). A small ``within`` fixes that but cuts
batches short under a backlog, where the featurizer's per-call cost then dominates (0.05 s gave
2.4x less throughput).

:func:`take_until_idle` yields a batch as soon as one of these holds:

- it holds ``max_`` events (as Faust), or the next event would take it past ``max_`` (events
  may weigh more than one: the featurizer's are chunks of records, see :mod:`.transport`);
- no new event has arrived for ``linger`` seconds: the stream went idle;
- ``within`` seconds have passed since the batch's *first* event (a bound under a slow drip).

Under a backlog Faust delivers events back to back, so batches still grow to ``max_``; live, an
event waits about ``linger``. With a :class:`Busy` rule, a batch lingers longer while the events
came fast (a replay at thousands per second, where linger 0 gives batches of whatever arrived
during the last one): it then grows until the window or ``max_``.

Acks follow Faust's ``take_events`` (the buffering processor, passive consumption and manual
acks are the same mechanism), with one stricter rule: a batch's events are acked only once the
consumer asks for the next batch, i.e. after the body of its ``async for`` finished without
raising. A batch whose processing raised (or a loop left with ``break``) is never acked, so on a
topic with acks enabled its offsets are not committed past. The featurizer disables acks on its
source and commits itself, after its outputs are acked (see :mod:`.app`); either way delivery is
at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from faust.types import EventT, StreamT
from mode.utils.futures import notify

Weight = Callable[[EventT], int]


@dataclass(frozen=True)
class Busy:
    """Linger ``linger`` seconds instead while events arrive at ``rate`` or more per second
    (the weight of the batches handed out in the last :data:`RATE_WINDOW_S`): a backlog or a
    replay then takes a few big batches instead of many small ones (each batch costs the
    kernel's and Faust's per-call work, and one produce request), while a live trickle never
    waits."""

    rate: float
    linger: float


NEVER_BUSY = Busy(rate=math.inf, linger=0.0)

#: The span a batch's arrival rate is judged over: the weight of the batches handed out in the
#: last ``RATE_WINDOW_S`` seconds. A rate from one interval would call a live trickle busy as
#: soon as two candles of different symbols came a millisecond apart (one candle in 1 ms is
#: 1,000/s), and that batch's successor would linger for nothing.
RATE_WINDOW_S = 0.1


def _one(event: EventT) -> int:
    return 1


async def _take_until_idle(
    stream: Any, max_: int, within: float, linger: float, weight: Weight, busy: Busy
) -> AsyncGenerator[list[EventT], None]:
    events: list[EventT] = []
    held = 0  # the open batch's weight
    first_at = last_at = 0.0
    recent: deque[tuple[float, int]] = deque()  # (handed out at, weight) within RATE_WINDOW_S
    lingering = linger  # the open batch's linger: busy.linger while the last rate was high
    full = asyncio.Event()  # the buffer holds max_ events
    consumed = asyncio.Event()  # a full buffer was handed out: the processor may go on
    consuming: asyncio.Future[None] | None = None  # set while a batch is with the consumer
    waiter: asyncio.Future[None] | None = None  # resolved by the first event of a batch
    clock = time.monotonic

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming, first_at, last_at, held
        try:
            if consuming is not None:
                try:
                    await consuming
                finally:
                    consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("take_until_idle found current_event is None")
            w = weight(event)
            if events and held + w > max_:  # it would overflow the open batch: hand that out
                await hand_out()
            events.append(event)
            held += w
            last_at = clock()
            if len(events) == 1:
                first_at = last_at
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            if held >= max_:
                await hand_out()
        except asyncio.CancelledError:  # pragma: no cover
            raise
        except Exception as exc:
            stream.log.exception("Error adding to take buffer: %r", exc)
            await stream.crash(exc)
        return value

    async def hand_out() -> None:
        """Mark the open batch full and wait until the consumer took it."""
        full.set()
        consumed.clear()
        await stream.wait(consumed)  # never more than max_ in a batch (unless one event is)

    def due() -> float:
        """Seconds until the open batch must be yielded (<= 0: now)."""
        return min(first_at + within, last_at + lingering) - clock()

    def release() -> None:
        """Let the buffering processor go on (after a batch, or when closing)."""
        notify(consuming)
        full.clear()
        consumed.set()

    stream_enable_acks: bool = stream.enable_acks
    stream.enable_acks = False  # acked here, only after the consumer processed the batch
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter(stream.channel))
    try:
        while not stream.should_stop:
            if not events:
                # One future and one timer per wait, where ``stream.wait_for_stopped`` starts and
                # cancels three tasks (the event, stopped, crashed): live, that is per candle.
                # A stop is seen within ``within`` (and Faust cancels the agent's task anyway).
                waiter = asyncio.get_running_loop().create_future()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(waiter, timeout=within)
                waiter = None
                continue
            wait = due()
            if wait > 0 and not full.is_set():
                await stream.wait_for_stopped(full, timeout=wait)
                continue
            consuming = asyncio.get_running_loop().create_future()
            now = clock()
            recent.append((now, held))
            while recent[0][0] < now - RATE_WINDOW_S:
                recent.popleft()
            rate = sum(w for _, w in recent) / RATE_WINDOW_S
            lingering = max(linger, busy.linger) if rate >= busy.rate else linger
            batch = list(events)
            yield batch  # raises GeneratorExit here (no acks) if the consumer stops early
            del events[: len(batch)]
            held = 0
            for event in batch:
                await stream.ack(event)
            release()
    finally:
        release()
        stream.enable_acks = stream_enable_acks
        stream._processors.remove(add_to_buffer)


def take_until_idle(
    stream: StreamT,
    max_: int,
    within: float,
    linger: float,
    weight: Weight = _one,
    busy: Busy = NEVER_BUSY,
) -> AsyncGenerator[list[EventT], None]:
    """Batches of events weighing up to ``max_`` from ``stream``: yielded once they weigh
    ``max_``, or the next event would overflow that, or the stream was idle for ``linger`` s, or
    ``within`` s passed since the batch's first event.

    Each event weighs ``weight(event)`` (1 by default: ``max_`` counts events; the featurizer
    counts the records of its chunked handovers). A single event heavier than ``max_`` is a
    batch of its own. Use in place of ``stream.take_events(max_, within)``; events are acked
    after the body of the ``async for`` that received them completed. ``busy``: the linger
    becomes ``busy.linger`` for the batch after one that came at ``busy.rate`` or faster.
    """
    if max_ < 1 or within <= 0 or linger < 0 or busy.linger < 0:
        raise ValueError(f"need max_ >= 1, within > 0, linger >= 0: {max_=} {within=} {linger=}")
    agen = _take_until_idle(stream, max_, within, linger, weight, busy)
    active = getattr(stream, "_active_agens", None)
    if active is not None:  # Stream.on_stop closes buffering generators left open (as Faust's)
        active.add(agen)
    return agen
