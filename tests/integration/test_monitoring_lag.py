"""The lag exporter against a real broker: exact lag per group and partition, served over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.broker import free_port
from services.common.kafka import ensure_topics, make_consumer, make_producer, send_batch
from services.common.settings import Settings
from services.common.topics import FEATURES, TICKS_CLEAN

pytestmark = pytest.mark.integration


async def _produce(settings: Settings, topic: str, n: int) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        # one send_batch: large batches, which fool Tansu's reported end offsets
        await send_batch(producer, topic, [(f"k{i % 5}".encode(), b"v%d" % i) for i in range(n)])
    finally:
        await producer.stop()


async def _consume_and_commit(settings: Settings, topic: str, group: str, at_least: int) -> int:
    consumer = make_consumer(topic, group_id=group, settings=settings)
    await consumer.start()
    try:
        seen = 0
        while seen < at_least:
            batch = await consumer.getmany(timeout_ms=1000, max_records=at_least - seen)
            seen += sum(len(r) for r in batch.values())
        await consumer.commit()
        return seen
    finally:
        await consumer.stop()


def _lag_samples(url: str) -> dict[tuple[str, str, str], float]:
    text = httpx.get(url, timeout=2).text
    return {
        (s.labels["group"], s.labels["topic"], s.labels["partition"]): s.value
        for fam in text_string_to_metric_families(text)
        if fam.name == "kafka_consumergroup_lag"
        for s in fam.samples
    }


async def test_exporter_reports_exact_lag(settings: Settings, service_env: dict, tmp_path: Path):
    await ensure_topics(settings)
    await _produce(settings, TICKS_CLEAN, 1500)
    await _produce(settings, FEATURES, 40)
    consumed = await _consume_and_commit(settings, TICKS_CLEAN, "lag-test-a", 600)
    await _consume_and_commit(settings, FEATURES, "lag-test-b", 40)

    port = free_port()
    env = {
        **service_env,
        "LAG_EXPORTER_METRICS_PORT": str(port),
        "LAG_EXPORTER_POLL_INTERVAL_S": "0.5",
    }
    log = open(tmp_path / "lag.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.lag_exporter"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url, samples, deadline = f"http://127.0.0.1:{port}/metrics", {}, time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                samples = _lag_samples(url)
            except httpx.HTTPError:
                samples = {}
            if {g for g, _, _ in samples} >= {"lag-test-a", "lag-test-b"}:
                break
            time.sleep(0.3)
        assert proc.poll() is None, (tmp_path / "lag.log").read_text()
        lag_a = sum(v for (g, t, _), v in samples.items() if g == "lag-test-a")
        lag_b = sum(v for (g, t, _), v in samples.items() if g == "lag-test-b")
        assert {t for (g, t, _) in samples if g == "lag-test-a"} == {TICKS_CLEAN}
        assert lag_a == 1500 - consumed
        assert lag_b == 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()
    assert proc.returncode == 0, (tmp_path / "lag.log").read_text()
