"""Dead letters exactly once: the ids already on ``ticks.dlq``, so a restarted stage skips them.

A stage commits its input only after its outputs are acknowledged, so a crash in between replays
the uncommitted input and would send its dead letters a second time. Every letter carries a
deterministic ``letter_id`` (source topic, partition, offset, row index; see
:func:`services.common.schemas.letter_id`) and is keyed by it on ``ticks.dlq``. Before its first
send after a start or a rebalance, a stage reads the keys on ``ticks.dlq`` once and from then on
sends only letters whose id is not there yet.

    >>> from services.common.schemas import DeadLetter, DeadLetterReason
    >>> why = [DeadLetterReason(code="late", message="late")]
    >>> d = DeadLetter.wrap(b"x", 3, stage="s", reasons=why, source_topic="t", source_partition=0,
    ...                     source_offset=9)
    >>> ledger = Ledger(None, "t")
    >>> ledger.ids = set()
    >>> [x.letter_id for x in ledger.admit([d, d])], ledger.skipped
    (['t:0:9:3'], 1)
"""

from __future__ import annotations

import logging
import time

from services.common import kafka
from services.common.kafka import Until
from services.common.schemas import DeadLetter
from services.common.settings import Settings
from services.common.topics import TICKS_DLQ

log = logging.getLogger(__name__)


class Ledger:
    """The letter ids of one input topic already on ``ticks.dlq``."""

    def __init__(self, settings: Settings | None, source_topic: str) -> None:
        self.settings = settings
        self.prefix = f"{source_topic}:"
        self.ids: set[str] | None = None
        self.skipped = 0

    def forget(self) -> None:
        """Re-read before the next send (after a rebalance another instance may have sent)."""
        self.ids = None

    async def fresh(self, letters: list[DeadLetter]) -> list[DeadLetter]:
        """The letters not on ``ticks.dlq`` yet (reading its keys first if needed)."""
        if not letters:
            return letters
        if self.ids is None:
            self.ids = await self.load()
        return self.admit(letters)

    def admit(self, letters: list[DeadLetter]) -> list[DeadLetter]:
        """Keep each id once; the kept ones count as sent (a failed send crashes the stage)."""
        assert self.ids is not None, "load() first"
        out = []
        for d in letters:
            if d.letter_id is not None:
                if d.letter_id in self.ids:
                    self.skipped += 1
                    log.info("dead letter already sent", extra={"letter_id": d.letter_id})
                    continue
                self.ids.add(d.letter_id)
            out.append(d)
        return out

    async def load(self) -> set[str]:
        """Every ``ticks.dlq`` key that names a letter from this input topic."""
        assert self.settings is not None
        started = time.perf_counter()
        consumer = kafka.make_consumer(group_id=None, settings=self.settings)
        await consumer.start()
        ids: set[str] = set()
        try:
            tps = await kafka.topic_partitions(consumer, TICKS_DLQ)
            starts = await consumer.beginning_offsets(tps) if tps else {}
            async for batch in kafka.read_log(consumer, starts, Until.end()):
                for rec in batch:
                    key = rec.key.decode("utf-8", "replace") if rec.key else ""
                    if key.startswith(self.prefix):
                        ids.add(key)
        finally:
            await consumer.stop()
        log.info(
            "dead-letter ids read",
            extra={
                "topic": TICKS_DLQ,
                "source": self.prefix[:-1],
                "ids": len(ids),
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        return ids


def record(letter: DeadLetter) -> tuple[bytes | None, bytes]:
    """A letter as a ``ticks.dlq`` record, keyed by its id (or its symbol when it has none)."""
    key = letter.letter_id or letter.symbol
    return (key.encode() if key else None, letter.to_bytes())
