"""What a stage's pure core reads of a consumed record, whoever consumed it.

aiokafka's ``ConsumerRecord``, the records Faust's transport hands over and a stage's own plain
dataclasses all satisfy these, so a core takes them as they come (no copy per record) and its
tests pass plain data."""

from __future__ import annotations

from typing import Protocol


class PositionedRecord(Protocol):
    """A record with its place in a partition: partition, offset, key, value."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class TopicRecord(PositionedRecord, Protocol):
    """A :class:`PositionedRecord` that also names its topic (a consumer of several topics)."""

    @property
    def topic(self) -> str: ...
