"""Foundation commands: the embedded broker, topic admin, and a subscriber (``tail``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import Annotated

import orjson
import typer

from services.common.settings import get_settings

topics_app = typer.Typer(help="Create or list the topics (idempotent).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("broker")(broker)
    app.add_typer(topics_app, name="topics")
    app.command("tail")(tail)


def broker(
    port: Annotated[int | None, typer.Option(help="port (default: BROKER_PORT)")] = None,
) -> None:
    """Run the embedded Tansu broker in the foreground until Ctrl-C."""
    from devstack.broker import EmbeddedBroker

    settings = get_settings()
    if not settings.embedded_broker:
        typer.echo(f"KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers}: nothing to start")
        raise typer.Exit(0)
    b = EmbeddedBroker(host=settings.broker_host, port=port or settings.broker_port).start()
    typer.echo(f"broker ready on {b.bootstrap} (pid {b.process.pid if b.process else '?'})")
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        b.stop()


@topics_app.command("create")
def topics_create(
    partitions: Annotated[int | None, typer.Option(help="data topic partitions")] = None,
) -> None:
    """Create every volstream topic with explicit partition counts (idempotent)."""
    from services.common import kafka

    settings = get_settings()
    if partitions:
        settings = settings.model_copy(update={"topic_partitions": partitions})
    created = asyncio.run(kafka.ensure_topics(settings))
    typer.echo(f"created: {', '.join(created) or '(none, all exist)'}")


@topics_app.command("list")
def topics_list() -> None:
    """List the topics on the broker with their partition counts."""
    from services.common import kafka

    for name, parts in asyncio.run(kafka.describe_topics(get_settings())).items():
        typer.echo(f"{name}\t{parts} partitions")


def tail(
    topic: Annotated[str, typer.Argument(help="topic to read, e.g. predictions")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
    n: Annotated[int | None, typer.Option("-n", help="stop after N messages")] = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="exit after this many seconds without messages")
    ] = None,
) -> None:
    """Print a topic's messages as JSON lines (key, partition, offset, value) until Ctrl-C."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(topic, from_beginning, n, idle_exit))


async def _tail(topic: str, from_beginning: bool, n: int | None, idle_exit: float | None) -> None:
    from services.common import kafka

    consumer = kafka.make_consumer(group_id=None, auto_offset_reset="latest")
    await consumer.start()
    seen = 0
    try:
        waited = 0.0
        while not (tps := await kafka.topic_partitions(consumer, topic)):
            if idle_exit is not None and waited >= idle_exit:
                return
            await asyncio.sleep(0.5)
            waited += 0.5
        start = await consumer.beginning_offsets(tps) if from_beginning else tps
        idle_ms = None if idle_exit is None else int(idle_exit * 1000)
        until = kafka.Until.follow() if idle_ms is None else kafka.Until.idle(idle_ms)
        async for batch in kafka.read_log(consumer, start, until, poll_ms=500):
            for r in batch[: n - seen if n is not None else None]:
                value = _value(r.value)
                line = {
                    "topic": r.topic,
                    "partition": r.partition,
                    "offset": r.offset,
                    "key": r.key.decode() if r.key else None,
                    "value": value,
                }
                sys.stdout.write(orjson.dumps(line).decode() + "\n")
                seen += 1
            sys.stdout.flush()
            if n is not None and seen >= n:
                return
    finally:
        await consumer.stop()


def _value(data: bytes | None) -> object:
    """A record's value for display: its JSON, a binary feature vector as its JSON document,
    else its text."""
    from services.common.errors import SchemaError
    from services.common.vector_codec import document, is_binary

    if data is None:
        return None
    try:
        return document(data) if is_binary(data) else orjson.loads(data)
    except (orjson.JSONDecodeError, SchemaError):
        return data.decode("utf-8", "replace")
