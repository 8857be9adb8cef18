"""The validator: a quality gate on every RawBatch (ticks.raw -> ticks.clean, rejects -> ticks.dlq).

``core`` and ``rules`` are pure; ``app`` is the Kafka loop; ``marks`` recovers the dedup
watermarks from ticks.clean; ``cli`` adds ``volstream dlq show`` and ``volstream dlq replay``.
"""
