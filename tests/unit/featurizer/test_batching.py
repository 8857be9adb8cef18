"""``take_until_idle`` on a real Faust agent (in-memory channel, no broker): batch boundaries
by size, by idleness and by window, and acks only after a batch was processed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import faust
import pytest

from services.featurizer.batching import NEVER_BUSY, Busy, take_until_idle


@dataclass
class Seen:
    """What the agent received: batches of values, when, and the ack state inside the body."""

    batches: list[list[int]] = field(default_factory=list)
    at: list[float] = field(default_factory=list)
    acked_inside: list[list[bool]] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)


@asynccontextmanager
async def agent_taking(
    max_: int,
    within: float,
    linger: float,
    fail_on: int | None = None,
    weight: Callable[[Any], int] | None = None,
    busy: Busy = NEVER_BUSY,
) -> AsyncIterator[tuple[Callable[[Any], Any], Seen]]:
    """A started test agent batching with ``take_until_idle``; yields (put, seen)."""
    app = faust.App(f"t-batching-{id(object())}", broker="kafka://127.0.0.1:1", store="memory://")
    seen = Seen()

    @app.agent(app.channel())
    async def agent(stream: faust.StreamT) -> AsyncIterator[int]:
        weighed = {"weight": weight} if weight else {}
        async for events in take_until_idle(stream, max_, within, linger, busy=busy, **weighed):
            seen.at.append(time.monotonic())
            seen.batches.append([e.value for e in events])
            seen.acked_inside.append([e.message.acked for e in events])
            seen.events.extend(events)
            if fail_on in seen.batches[-1]:
                raise RuntimeError("processing failed")
            yield len(events)

    async with agent.test_context() as a:

        async def put(value: Any) -> Any:
            return await a.put(value, wait=False)

        yield put, seen


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_a_burst_fills_batches_up_to_max_then_the_rest_goes_when_idle() -> None:
    async with agent_taking(max_=5, within=10.0, linger=0.05) as (put, seen):
        for i in range(13):
            await put(i)
        t_last = time.monotonic()
        await wait_until(lambda: sum(map(len, seen.batches)) == 13)
    assert seen.batches == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12]]
    assert seen.at[-1] - t_last >= 0.05  # the remainder waited for the linger...
    assert seen.at[-1] - t_last < 5.0  # ...not for the window


async def test_a_lone_event_waits_for_the_linger_not_the_window() -> None:
    async with agent_taking(max_=100, within=10.0, linger=0.01) as (put, seen):
        for i in range(3):
            t_put = time.monotonic()
            await put(i)
            await wait_until(lambda i=i: len(seen.batches) == i + 1)
            assert 0.01 <= seen.at[-1] - t_put < 2.0
    assert seen.batches == [[0], [1], [2]]


async def test_a_steady_drip_is_cut_by_the_window_from_the_first_event() -> None:
    async with agent_taking(max_=1000, within=0.2, linger=1.0) as (put, seen):
        t_first = time.monotonic()
        i = 0
        while time.monotonic() - t_first < 0.5:  # never idle for the linger
            await put(i)
            i += 1
            await asyncio.sleep(0.01)
        await wait_until(lambda: sum(map(len, seen.batches)) == i)
    first = seen.at[0] - t_first
    assert 0.2 <= first < 0.45  # the window, counted from the first event
    assert len(seen.batches) >= 2
    assert [v for b in seen.batches for v in b] == list(range(i))  # in order, none lost


async def test_events_are_acked_only_after_their_batch_was_processed() -> None:
    async with agent_taking(max_=2, within=10.0, linger=0.01) as (put, seen):
        for i in range(5):
            await put(i)
        await wait_until(lambda: len(seen.batches) == 3)
        await wait_until(lambda: all(e.message.acked for e in seen.events))
    assert seen.batches == [[0, 1], [2, 3], [4]]
    assert seen.acked_inside == [[False, False]] * 2 + [[False]]


async def test_a_batch_whose_processing_failed_is_not_acked() -> None:
    async with agent_taking(max_=2, within=10.0, linger=0.01, fail_on=2) as (put, seen):
        for i in range(4):
            await put(i)
        await wait_until(lambda: len(seen.batches) == 2)
        await wait_until(lambda: all(e.message.acked for e in seen.events[:2]))
        await asyncio.sleep(0.05)
    assert seen.batches == [[0, 1], [2, 3]]
    assert [e.message.acked for e in seen.events] == [True, True, False, False]


async def test_weighted_events_fill_batches_without_overflowing_max() -> None:
    """Chunks of records (the featurizer's handovers) weigh their length: a batch is handed out
    before a chunk would take it past ``max_``; a chunk heavier than ``max_`` goes alone."""
    chunks = [[0, 1, 2], [3, 4], [5, 6, 7], [8], [9, 10, 11, 12, 13, 14], [15]]
    weight = lambda event: len(event.value)  # noqa: E731
    async with agent_taking(max_=5, within=10.0, linger=0.05, weight=weight) as (put, seen):
        for chunk in chunks:
            await put(chunk)
        await wait_until(lambda: sum(map(len, seen.batches)) == len(chunks))
    assert seen.batches == [
        [[0, 1, 2], [3, 4]],
        [[5, 6, 7], [8]],
        [[9, 10, 11, 12, 13, 14]],  # heavier than max_: alone
        [[15]],
    ]


async def _fast_then_lone(busy: Busy) -> tuple[float, float]:
    """Mean batch of a fast stream (~2,000 events/s), then how long a lone event put after a
    pause and the one after it waited for their batches."""
    async with agent_taking(max_=10_000, within=0.3, linger=0.0, busy=busy) as (put, seen):
        t0, i = time.monotonic(), 0
        while time.monotonic() - t0 < 0.6:
            for _ in range(4):
                await put(i)
                i += 1
            await asyncio.sleep(0.002)
        await wait_until(lambda: sum(map(len, seen.batches)) == i)
        mean = i / len(seen.batches)
        await asyncio.sleep(0.3)
        waited = []
        for _ in range(2):
            n, t_put = len(seen.batches), time.monotonic()
            await put(i)
            i += 1
            await wait_until(lambda n=n: len(seen.batches) == n + 1)
            waited.append(seen.at[-1] - t_put)
    return mean, waited[1]


async def test_a_fast_stream_lingers_into_big_batches_and_a_trickle_does_not() -> None:
    quiet_mean, _ = await _fast_then_lone(NEVER_BUSY)
    busy_mean, lone = await _fast_then_lone(Busy(rate=500.0, linger=0.2))
    # the rate is judged over RATE_WINDOW_S, so the first ~100 ms still go in small batches
    assert busy_mean >= 30 > 4 * quiet_mean, (busy_mean, quiet_mean)
    assert lone < 0.1  # after the pause, not busy any more: no 0.2 s linger


async def test_a_live_trickle_of_close_pairs_is_not_busy() -> None:
    """100 candles/s where one symbol's candle comes just after another's batch left: one
    candle a millisecond after a batch is not 1,000 candles/s, so nothing lingers."""
    async with agent_taking(max_=10_000, within=0.3, linger=0.0, busy=Busy(1000.0, 0.2)) as (
        put,
        seen,
    ):
        waited, i = [], 0
        for _ in range(15):
            for _ in range(2):  # the second right after the first one's batch was handed out
                n, t_put = len(seen.batches), time.monotonic()
                await put(i)
                i += 1
                while len(seen.batches) == n:  # spin: the next put comes right after the batch
                    assert time.monotonic() - t_put < 5, "timed out"
                    await asyncio.sleep(0)
                waited.append(seen.at[-1] - t_put)
            await asyncio.sleep(0.02)
    assert max(waited) < 0.1, waited  # a 0.2 s busy linger would show here


@pytest.mark.parametrize(("max_", "within", "linger"), [(0, 1.0, 0.0), (1, 0.0, 0.0), (1, 1, -1)])
def test_rejects_nonsense_bounds(max_: int, within: float, linger: float) -> None:
    with pytest.raises(ValueError):
        take_until_idle(None, max_, within=within, linger=linger)  # type: ignore[arg-type]
