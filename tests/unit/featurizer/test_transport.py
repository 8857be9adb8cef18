"""The chunked handover of :mod:`services.featurizer.transport`, on aiokafka's own records."""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord
from faust.types import TP

from services.featurizer.transport import Chunk, chunk_weight, records_of

TP0 = TP("ticks.clean", 2)


def records(offsets: range) -> list[ConsumerRecord[bytes, bytes]]:
    return [
        ConsumerRecord("ticks.clean", 2, o, 1_000 * o, 0, b"BTC", b"v%d" % o, None, 3, 2, [])
        for o in offsets
    ]


def test_a_chunk_carries_its_records_in_order_and_ends_at_the_last_offset() -> None:
    chunk = Chunk.of(TP0, records(range(10, 15)), generation_id=3)
    assert [r.offset for r in chunk.value] == [10, 11, 12, 13, 14]
    assert (chunk.tp, chunk.offset, chunk.first_offset, chunk.key) == (TP0, 14, 10, None)
    assert (chunk.timestamp, chunk.generation_id, chunk.serialized_value_size) == (14.0, 3, 10)
    assert chunk_weight(chunk) == 5  # what take_until_idle counts towards the batch size


def test_since_keeps_only_the_records_not_delivered_yet() -> None:
    chunk = Chunk.of(TP0, records(range(10, 15)), generation_id=3)
    rest = chunk.since(13)
    assert rest is not None
    assert ([r.offset for r in rest.value], rest.first_offset, rest.offset) == ([13, 14], 13, 14)
    assert rest.generation_id == 3
    assert chunk.since(15) is None
    assert [r.offset for r in chunk.since(0).value] == list(range(10, 15))  # type: ignore[union-attr]


def test_a_batch_of_chunks_flattens_to_its_records_in_order() -> None:
    chunks = [Chunk.of(TP0, records(range(a, b)), 1) for a, b in ((0, 3), (3, 4), (4, 9))]
    assert [r.offset for r in records_of(chunks)] == list(range(9))  # type: ignore[arg-type]
