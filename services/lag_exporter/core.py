"""Consumer lag from offsets: pure functions on plain dicts, no Kafka.

Tansu (the embedded broker) reports a partition's end offset as the *base offset of its last
record batch* plus one, so a batched producer makes it undercount badly (1 for a partition
holding 1,500 records in one batch). The exporter therefore reads the last batch from that
reported offset minus one and takes the offset after its last record as the true end:

    >>> true_end(reported=1511, last_read=1842)
    1843
    >>> true_end(reported=0, last_read=None)
    0

Lag is the true end minus the committed offset, never negative; a partition a group never
committed counts from offset 0 (memory storage never deletes, and consumers start earliest):

    >>> group_lag({("ticks.clean", 0): 40, ("ticks.clean", 1): -1},
    ...           {("ticks.clean", 0): 100, ("ticks.clean", 1): 7})
    {('ticks.clean', 0): 60, ('ticks.clean', 1): 7}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: (topic, partition)
Partition = tuple[str, int]


def true_end(reported: int, last_read: int | None) -> int:
    """The end offset: one past the last record read from ``reported - 1`` on, if any."""
    if last_read is None:
        return reported
    return max(reported, last_read + 1)


def seek_offset(reported: int) -> int | None:
    """Where to start reading the last batch; None when the partition is empty.

    >>> seek_offset(1511), seek_offset(0)
    (1510, None)
    """
    return reported - 1 if reported > 0 else None


def group_lag(
    committed: Mapping[Partition, int], ends: Mapping[Partition, int]
) -> dict[Partition, int]:
    """Messages behind per partition (committed offsets without a known end are left out)."""
    return {tp: max(ends[tp] - max(offset, 0), 0) for tp, offset in committed.items() if tp in ends}


def watched(topic: str) -> bool:
    """Internal topics (``__consumer_offsets``, Faust's ``__assignor`` ...) are not reported.

    >>> watched("ticks.clean"), watched("__consumer_offsets")
    (True, False)
    """
    return not topic.startswith("__")


@dataclass(frozen=True)
class Snapshot:
    """One reading: lag per (group, topic, partition) and the true end per partition."""

    lags: dict[tuple[str, str, int], int] = field(default_factory=dict)
    ends: dict[Partition, int] = field(default_factory=dict)
    committed: dict[tuple[str, str, int], int] = field(default_factory=dict)
    taken_at: float = 0.0


def build_snapshot(
    committed_by_group: Mapping[str, Mapping[Partition, int]],
    ends: Mapping[Partition, int],
    taken_at: float,
) -> Snapshot:
    """Join every group's committed offsets with the true ends.

    >>> s = build_snapshot({"g": {("t", 0): 5}}, {("t", 0): 9}, 1.0)
    >>> s.lags
    {('g', 't', 0): 4}
    """
    lags: dict[tuple[str, str, int], int] = {}
    committed: dict[tuple[str, str, int], int] = {}
    for group, offsets in committed_by_group.items():
        for (topic, part), lag in group_lag(offsets, ends).items():
            lags[(group, topic, part)] = lag
            committed[(group, topic, part)] = offsets[(topic, part)]
    return Snapshot(lags=lags, ends=dict(ends), committed=committed, taken_at=taken_at)


def partitions_of(committed_by_group: Mapping[str, Mapping[Partition, int]]) -> list[Partition]:
    """Every watched partition some group committed on, sorted."""
    found: Iterable[Partition] = (tp for o in committed_by_group.values() for tp in o)
    return sorted({tp for tp in found if watched(tp[0])})
