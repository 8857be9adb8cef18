"""The Faust extension points and the ack-then-commit pipeline, without a broker."""

from __future__ import annotations

from services.common.settings import Settings
from services.featurizer.app import build, internal_topics
from services.featurizer.settings import FeaturizerSettings
from services.featurizer.transport import Consumer, Transport


async def test_volstream_transport_sets_the_fetch_wait() -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1,127.0.0.1:2")
    fs = FeaturizerSettings(fetch_max_wait_ms=7, web_port=0)
    app = build(settings, fs)
    assert isinstance(app.transport, Transport)
    assert isinstance(app.consumer, Consumer)
    assert [u.host for u in app.conf.broker] == ["127.0.0.1", "127.0.0.1"]
    inner = app.consumer._thread._create_worker_consumer(app.transport)
    assert inner._fetch_max_wait_ms == 7  # Faust alone would say 1500
    assert app.conf.processing_guarantee.value == "at_least_once"
    assert app.conf.broker_session_timeout == 10.0
    assert internal_topics(fs) == [("volstream-featurizer-__assignor-__leader", 1)]


async def test_raw_schema_and_quiet_monitor() -> None:
    """The source topic's events carry the message's raw bytes; the Monitor skips per-event work."""
    from faust.types import Message

    from services.featurizer.transport import QuietMonitor, RawSchema

    app = build(Settings(), FeaturizerSettings())
    assert isinstance(app.monitor, QuietMonitor)
    decode = RawSchema().compile(app)
    for key, value in ((b"BTC", b'{"a":1}'), (None, None)):
        msg = Message("ticks.clean", 0, 7, 0.0, 0, [], key, value, None)
        event = await decode(msg)
        assert (event.key, event.value, event.message) == (key, value, msg)
