"""Commit input offsets only after the outputs they produced are acknowledged, without waiting.

Shared by the featurizer and the predictor. A stage hands each published micro-batch (its send
futures and the input positions it covers) to a :class:`Committer` and goes on with the next batch;
a background task awaits the acks batch after batch, in order, and commits the positions reached,
coalesced. So a position is committed only once every output of every record below it is durable,
and the broker round trips overlap the next batch's computation. A failed send is fatal: the next
:meth:`Committer.submit` (or :meth:`Committer.drain`, :meth:`Committer.close`) re-raises it,
``on_error`` is called as soon as it happens, and the worker restarts from the last committed
position. Positions are per partition of the one input topic (the next offset to read, as Kafka
commits them).

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


class Committer:
    """Ordered ack-then-commit of micro-batches, at most ``max_in_flight`` unacked batches."""

    def __init__(
        self,
        commit: CommitFn,
        max_in_flight: int = 4,
        on_error: Callable[[BaseException], object] | None = None,
        name: str = "committer",
    ) -> None:
        self._commit = commit
        self._on_error = on_error
        self._queue: asyncio.Queue[tuple[Sequence[asyncio.Future[object]], dict[int, int]]]
        self._queue = asyncio.Queue(maxsize=max_in_flight)
        self._pending: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._name = name
        self.committed: dict[int, int] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)
        self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self._on_error:
            log.error("publishing or committing failed", exc_info=task.exception())
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
            raise self._task.exception()  # type: ignore[misc]
        await step

    async def _run(self) -> None:
        while True:
            futures, offsets = await self._queue.get()
            try:
                if futures:
                    await asyncio.gather(*futures)
                self._pending.update(offsets)
                if self._queue.empty() and self._pending:
                    pending, self._pending = self._pending, {}
                    await self._commit(pending)
                    self.committed.update(pending)
            finally:
                self._queue.task_done()
