"""The only place topic names are written.

Every topic is created up front with an explicit partition count (Tansu gives auto-created topics
4 partitions, which would break co-partitioning), so each one is declared here with its key and
value schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TICKS_RAW = "ticks.raw"
TICKS_CLEAN = "ticks.clean"
TICKS_DLQ = "ticks.dlq"
FEATURES = "features"
PREDICTIONS = "predictions"
MODEL_EVENTS = "model.events"


@dataclass(frozen=True)
class TopicSpec:
    """A topic as we create it: name, partitions, configs, and what flows on it (for docs)."""

    name: str
    key: str
    value: str
    partitions: int | None = None  # None: the settings' TOPIC_PARTITIONS
    configs: dict[str, str] = field(default_factory=dict)


#: Seven days of retention is enough for the featurizer to rebuild its longest window.
_WEEK_MS = str(7 * 24 * 3600 * 1000)

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(TICKS_RAW, "symbol", "RawBatch", configs={"retention.ms": _WEEK_MS}),
    TopicSpec(
        TICKS_CLEAN, "symbol", "Candle", configs={"retention.ms": str(14 * 24 * 3600 * 1000)}
    ),
    TopicSpec(TICKS_DLQ, "none", "DeadLetter", configs={"retention.ms": _WEEK_MS}),
    TopicSpec(FEATURES, "symbol", "FeatureVector", configs={"retention.ms": _WEEK_MS}),
    TopicSpec(PREDICTIONS, "symbol", "Prediction", configs={"retention.ms": _WEEK_MS}),
    TopicSpec(
        MODEL_EVENTS,
        "model name",
        "ModelEvent",
        partitions=1,
        configs={"cleanup.policy": "compact"},
    ),
)


def topic_names() -> list[str]:
    """All data topic names, in pipeline order."""
    return [t.name for t in TOPICS]
