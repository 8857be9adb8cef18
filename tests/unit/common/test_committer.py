"""The ack-then-commit pipeline shared by the featurizer and the predictor, without a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from services.common.committer import Committer
from services.predictor.stream import _Assignment


def recording(max_in_flight: int, **kw: object) -> tuple[Committer, list[dict[int, int]]]:
    """A started Committer whose commits are appended to the returned list."""
    committed: list[dict[int, int]] = []

    async def commit(offsets: Mapping[int, int]) -> None:
        committed.append(dict(offsets))

    c = Committer(commit, max_in_flight=max_in_flight, **kw)  # type: ignore[arg-type]
    c.start()
    return c, committed


async def test_committer_commits_in_order_and_coalesces() -> None:
    c, committed = recording(8)
    loop = asyncio.get_running_loop()
    acks = [loop.create_future() for _ in range(3)]
    for i, fut in enumerate(acks):
        await c.submit([fut], {i % 2: 100 * (i + 1)})
    for fut in reversed(acks):
        fut.set_result(None)
    await c.close()
    assert committed[-1] == {0: 300, 1: 200}
    assert c.committed == {0: 300, 1: 200}


async def test_committer_never_commits_past_a_failed_send() -> None:
    errors: list[BaseException] = []
    c, committed = recording(1, on_error=errors.append)
    loop = asyncio.get_running_loop()
    ok, bad = loop.create_future(), loop.create_future()
    await c.submit([ok], {0: 10})
    ok.set_result(None)
    await asyncio.sleep(0.01)
    await c.submit([bad], {0: 20})
    bad.set_exception(RuntimeError("broker refused"))
    with pytest.raises(RuntimeError, match="broker refused"):
        await c.submit([], {0: 30})
    assert committed == [{0: 10}]
    assert [str(e) for e in errors] == ["broker refused"]
    with pytest.raises(RuntimeError):
        await c.close()


async def test_revocation_waits_for_the_in_flight_batches() -> None:
    c, committed = recording(4)
    listener = _Assignment()
    listener.before_revoke = c.drain
    ack = asyncio.get_running_loop().create_future()
    await c.submit([ack], {1: 7})
    revoke = asyncio.create_task(listener.on_partitions_revoked(set()))
    await asyncio.sleep(0.05)
    assert not revoke.done() and committed == []
    ack.set_result(None)
    await asyncio.wait_for(revoke, 2)
    assert committed == [{1: 7}]
    await c.close()


async def test_commits_are_spaced_by_the_interval_and_the_last_one_still_lands() -> None:
    """One small batch at a time (a live stage) gives one commit per interval, not one per
    batch, and positions acked just after a commit are committed once the interval passed,
    with nothing else arriving."""
    c, committed = recording(8, interval_s=0.3)
    loop = asyncio.get_running_loop()
    for i in range(1, 6):
        ack = loop.create_future()
        ack.set_result(None)
        await c.submit([ack], {0: i})
        await asyncio.sleep(0.01)
    assert committed == [{0: 1}]  # the first at once, the next four wait for the interval
    await asyncio.sleep(0.45)
    assert committed == [{0: 1}, {0: 5}]
    await c.close()
    assert c.committed == {0: 5}


async def test_drain_commits_at_once_inside_the_interval() -> None:
    c, committed = recording(8, interval_s=60)
    loop = asyncio.get_running_loop()
    for i in (1, 2):
        ack = loop.create_future()
        ack.set_result(None)
        await c.submit([ack], {0: i})
        await asyncio.sleep(0.01)
    await asyncio.wait_for(c.drain(), 1)
    assert committed == [{0: 1}, {0: 2}]
    await c.close()


async def test_a_steady_backlog_still_commits_every_interval() -> None:
    """A stage that is always behind keeps batches queued (publishing returns before the
    acks): the acked positions are still committed once per interval, not only when the
    queue runs dry, so a crash replays an interval's input, not the whole backlog."""
    c, committed = recording(2, interval_s=0.05)
    loop = asyncio.get_running_loop()
    acks = [loop.create_future() for _ in range(30)]

    async def broker() -> None:  # acks one batch every 10 ms, in order
        for ack in acks:
            await asyncio.sleep(0.01)
            ack.set_result(None)

    acking = asyncio.create_task(broker())
    for i, ack in enumerate(acks, 1):
        await c.submit([ack], {0: i})  # waits while two batches are unacked: never runs dry
    await acking
    await c.close()
    assert len(committed) >= 3, committed  # ~0.3 s of backlog, a commit per 0.05 s
    assert [p[0] for p in committed] == sorted(p[0] for p in committed)
    assert c.committed == {0: 30}
