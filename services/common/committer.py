"""Commit input offsets only after the outputs they produced are acknowledged, without waiting.

Shared by the validator, the featurizer and the predictor. A stage hands each published
micro-batch (its send futures and the input positions it covers) to a :class:`Committer` and goes
on with the next batch; a background task awaits the acks batch after batch, in order, and commits
the positions reached, coalesced. So a position is committed only once every output of every
record below it is durable, and the broker round trips overlap the next batch's computation. A
failed send is fatal: the next :meth:`Committer.submit` (or :meth:`Committer.drain`,
:meth:`Committer.close`) re-raises it, ``on_error`` is called as soon as it happens, and the worker
restarts from the last committed position. Positions are per partition of the one input topic (the
next offset to read, as Kafka commits them).

Commits are spaced by at least ``interval_s`` (:data:`COMMIT_INTERVAL_S`): positions acked in
between are coalesced into the next commit, and the last ones are committed once the interval has
passed even when nothing else arrives. A live stage fed one small batch at a time would otherwise
send one OffsetCommit per input message (~70 µs of broker and ~150 µs of client CPU each on the
embedded broker), for nothing: a crash replays at most the interval's input, which every stage
deduplicates anyway. A stage that stays behind (a replay, its batches always queued here) still
commits once per interval, not only when its queue runs dry. :meth:`Committer.drain` and
:meth:`Committer.close` commit at once.

    >>> import asyncio
    >>> async def demo():
    ...     committed = []
    ...     async def commit(offsets):
    ...         committed.append(dict(offsets))
    ...     c = Committer(commit, max_in_flight=2)
    ...     c.start()
    ...     loop = asyncio.get_running_loop()
    ...     acks = [loop.create_future(), loop.create_future()]
    ...     await c.submit([acks[0]], {0: 10})
    ...     await c.submit([acks[1]], {0: 20, 1: 5})
    ...     acks[1].set_result(None)  # the later batch is acked first ...
    ...     await asyncio.sleep(0.01)
    ...     before = list(committed)   # ... and nothing is committed yet
    ...     acks[0].set_result(None)
    ...     await c.close()
    ...     return before, committed[-1]
    >>> asyncio.run(demo())
    ([], {0: 20, 1: 5})
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

log = logging.getLogger(__name__)

CommitFn = Callable[[Mapping[int, int]], Awaitable[object]]

#: Least seconds between two commits of one Committer (see the module docstring).
COMMIT_INTERVAL_S = 0.2
#: Unacked micro-batches at most; then the stage waits for acks (back-pressure, since publishing
#: returns at once). At 4 the featurizer's agent waited in :meth:`Committer.submit` ~12 % of a
#: replay; every stage uses this one bound.
MAX_IN_FLIGHT = 8

_Item = tuple[Sequence[asyncio.Future[object]], dict[int, int]]


class Committer:
    """Ordered ack-then-commit of micro-batches, at most ``max_in_flight`` unacked batches,
    commits at least ``interval_s`` apart."""

    def __init__(
        self,
        commit: CommitFn,
        max_in_flight: int = MAX_IN_FLIGHT,
        on_error: Callable[[BaseException], object] | None = None,
        name: str = "committer",
        interval_s: float = COMMIT_INTERVAL_S,
    ) -> None:
        self._commit = commit
        self._on_error = on_error
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=max_in_flight)
        self._pending: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._name = name
        self._interval_s = interval_s
        self._due = 0.0  # loop time from which the next commit may go
        self._lock = asyncio.Lock()
        self._reported = False
        self.committed: dict[int, int] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)
        self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        """Report the background task's failure, once (here or in :meth:`_unless_failed`,
        whichever sees it first)."""
        if self._reported or task.cancelled() or task.exception() is None:
            return
        self._reported = True
        log.error("publishing or committing failed", exc_info=task.exception())
        if self._on_error:
            self._on_error(task.exception())  # type: ignore[arg-type]

    async def submit(
        self, futures: Sequence[asyncio.Future[object]], offsets: Mapping[int, int]
    ) -> None:
        """Queue a published batch; waits while too many batches are unacked."""
        await self._unless_failed(self._queue.put((futures, dict(offsets))))

    async def drain(self) -> None:
        """Wait until every queued batch is acked and committed (before a rebalance, say)."""
        if self._task is not None:
            await self._unless_failed(self._queue.join())
            await self._unless_failed(self._flush())

    async def close(self) -> None:
        """Wait for every queued batch to be acked and committed, then stop."""
        if self._task is None:
            return
        await self.drain()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _unless_failed(self, aw: Awaitable[object]) -> None:
        """Await ``aw``, unless the background task dies first: then raise its error."""
        assert self._task is not None, "start() first"
        step = asyncio.ensure_future(aw)
        await asyncio.wait([step, self._task], return_when=asyncio.FIRST_COMPLETED)
        if self._task.done() and not self._task.cancelled() and self._task.exception():
            step.cancel()
            self._done(self._task)
            raise self._task.exception()  # type: ignore[misc]
        await step

    async def _flush(self) -> None:
        """Commit the positions acked so far (nothing when there are none)."""
        async with self._lock:
            if not self._pending:
                return
            pending, self._pending = self._pending, {}
            await self._commit(pending)
            self.committed.update(pending)
            self._due = asyncio.get_running_loop().time() + self._interval_s

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        getter: asyncio.Future[_Item] | None = None
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(self._queue.get())
                # acked positions wait for the interval, or for the next batch (coalesced)
                timeout = max(0.0, self._due - loop.time()) if self._pending else None
                done, _ = await asyncio.wait([getter], timeout=timeout)
                if not done:
                    await self._flush()
                    continue
                futures, offsets = getter.result()
                getter = None
                try:
                    if futures:
                        await asyncio.gather(*futures)
                    self._pending.update(offsets)
                    if loop.time() >= self._due:  # also under a steady backlog of batches
                        await self._flush()
                finally:
                    self._queue.task_done()
        finally:
            if getter is not None:
                getter.cancel()
