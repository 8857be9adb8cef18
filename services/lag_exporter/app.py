"""The lag exporter's I/O: read committed offsets and true end offsets, serve them to Prometheus.

Committed offsets come from confluent-kafka's admin client: aiokafka's OffsetFetch response fails
to decode against Tansu (measured), while librdkafka 2.16's works. End offsets come from an
aiokafka consumer without a group (the project's factory) that reads each partition's last record
batch, because Tansu's reported end offsets undercount (see :mod:`services.lag_exporter.core`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence

from aiokafka import TopicPartition
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException
from confluent_kafka.admin import AdminClient
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.common.kafka import make_consumer
from services.common.settings import Settings
from services.lag_exporter.core import (
    Partition,
    Snapshot,
    build_snapshot,
    partitions_of,
    seek_offset,
    true_end,
)
from services.lag_exporter.settings import LagExporterSettings

log = logging.getLogger(__name__)

POLLS = Counter("kafka_lag_exporter_polls_total", "Offset readings, by outcome", ["outcome"])
#: Rounds of reading the last batches before giving up on a partition that keeps growing.
MAX_TAIL_ROUNDS = 20


class LagCollector(Collector):
    """Serves the latest :class:`Snapshot` (swapped whole, so a scrape never sees half of one)."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self.snapshot
        labels = ["group", "topic", "partition"]
        lag = GaugeMetricFamily(
            "kafka_consumergroup_lag", "Messages between committed offset and end", labels=labels
        )
        committed = GaugeMetricFamily(
            "kafka_consumergroup_committed_offset", "Committed offset", labels=labels
        )
        for (group, topic, part), value in sorted(snap.lags.items()):
            lag.add_metric([group, topic, str(part)], value)
            committed.add_metric([group, topic, str(part)], snap.committed[(group, topic, part)])
        end = GaugeMetricFamily(
            "kafka_topic_partition_end_offset",
            "True end offset (last batch read)",
            labels=["topic", "partition"],
        )
        for (topic, part), value in sorted(snap.ends.items()):
            end.add_metric([topic, str(part)], value)
        taken = GaugeMetricFamily(
            "kafka_lag_exporter_last_success_timestamp_seconds", "When offsets were last read"
        )
        taken.add_metric([], snap.taken_at)
        yield from (lag, committed, end, taken)


class OffsetReader:
    """Reads every watched group's committed offsets and the true end of their partitions."""

    def __init__(self, settings: Settings, lag: LagExporterSettings) -> None:
        self.settings, self.lag = settings, lag
        self.admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
        self.consumer = make_consumer(group_id=None, settings=settings, fetch_max_wait_ms=10)

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    def _groups(self) -> list[str]:
        if self.lag.groups:
            return list(self.lag.groups)
        found = self.admin.list_consumer_groups(request_timeout=self.lag.timeout_s).result()
        return sorted(g.group_id for g in found.valid)

    def committed(self) -> dict[str, dict[Partition, int]]:
        """Committed offsets per group (blocking admin calls; run in a thread)."""
        out: dict[str, dict[Partition, int]] = {}
        for group in self._groups():
            request = [ConsumerGroupTopicPartitions(group)]
            futures = self.admin.list_consumer_group_offsets(
                request, request_timeout=self.lag.timeout_s
            )
            result = futures[group].result()
            out[group] = {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions}
        return out

    async def ends(self, partitions: Sequence[Partition]) -> dict[Partition, int]:
        """True end offsets: the reported end, corrected by reading the last batch."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        if not tps:
            return {}
        reported = await self.consumer.end_offsets(tps)
        self.consumer.assign(tps)
        last: dict[Partition, int] = {}
        for tp in tps:
            start = seek_offset(reported[tp])
            if start is None:
                self.consumer.pause(tp)
            else:
                self.consumer.resume(tp)
                self.consumer.seek(tp, start)
        for _ in range(MAX_TAIL_ROUNDS):
            batch = await self.consumer.getmany(timeout_ms=100)
            if not batch:
                break
            for tp, records in batch.items():
                last[(tp.topic, tp.partition)] = records[-1].offset
        return {
            (tp.topic, tp.partition): true_end(reported[tp], last.get((tp.topic, tp.partition)))
            for tp in tps
        }

    async def snapshot(self) -> Snapshot:
        """One full reading."""
        committed = await asyncio.to_thread(self.committed)
        ends = await self.ends(partitions_of(committed))
        return build_snapshot(committed, ends, time.time())


async def poll_once(reader: OffsetReader, collector: LagCollector) -> bool:
    """Take a snapshot; on a broker error, serve nothing stale and count the error."""
    try:
        collector.snapshot = await reader.snapshot()
    except (KafkaException, OSError, TimeoutError) as exc:
        POLLS.labels(outcome="error").inc()
        collector.snapshot = Snapshot()
        log.warning("offset reading failed", extra={"error": repr(exc)})
        return False
    POLLS.labels(outcome="ok").inc()
    return True


async def run(
    settings: Settings, lag: LagExporterSettings, collector: LagCollector, stop: asyncio.Event
) -> None:
    """Poll offsets every ``LAG_EXPORTER_POLL_INTERVAL_S`` until ``stop`` is set."""
    reader = OffsetReader(settings, lag)
    await reader.start()
    try:
        while not stop.is_set():
            await poll_once(reader, collector)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), lag.poll_interval_s)
    finally:
        await reader.stop()
