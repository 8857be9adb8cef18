"""The ingestor's I/O shell: poll CryptoCompare (or replay files) and publish RawBatches.

- :class:`Publisher` sends RawBatches keyed by symbol to ``ticks.raw`` with ``send_batch`` and
  moves the durable checkpoint only after the broker acknowledged them.
- :class:`Poller` runs live polls and backfills: the newest page, then pages back with ``toTs`` to
  the checkpoint, oldest first on output, only closed candles newer than the checkpoint.
- Live mode is warm from the first minute: each symbol first gets the history its features need
  (:meth:`Poller.warm_up`: the lake, then the API's week of minutes, oldest first), all of it
  published before that symbol's first live poll, so nothing arrives behind the validator's mark.
  Then :meth:`Poller.follow` polls just after each minute closes and retries every
  ``ALIGN_RETRY_S`` while the API still shows that minute open (its availability lag).
- :func:`replay` streams a file at a multiple of real time or as fast as the broker takes it.

Upstream failures skip the poll (counted) and the loop goes on; broker failures raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from services.common import kafka, lake
from services.common.errors import ConfigError, UpstreamError
from services.common.logging import configure_logging
from services.common.metrics import serve_metrics
from services.common.settings import Settings
from services.common.topics import TICKS_RAW
from services.ingestor import metrics
from services.ingestor.checkpoint import CheckpointStore
from services.ingestor.client import CryptoCompareClient, RetryPolicy, rate_limiter
from services.ingestor.core import (
    MINUTE,
    Row,
    closing_minute,
    drop_prehistory,
    encode_batches,
    is_zero_row,
    lag_seconds,
    lead_time,
    newest_time,
    next_tick,
    page_back,
    parse_speed,
    require_api_key,
    select_new,
    symbol_from_filename,
    valid_times,
)
from services.ingestor.errors import AuthRequired, HistoryUnavailable
from services.ingestor.recover import reconcile
from services.ingestor.replay import after_checkpoint, iter_slices, paced
from services.ingestor.settings import IngestorSettings

log = logging.getLogger(__name__)

#: Sends (key, value) records and returns once the broker acknowledged all of them.
Send = Callable[[list[tuple[bytes, bytes]]], Awaitable[int]]


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True when ``stop`` was set meanwhile."""
    if seconds > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


class Publisher:
    """RawBatches to ``ticks.raw``, then the checkpoint (never before the ack)."""

    def __init__(self, send: Send, store: CheckpointStore, chunk_size: int = 500) -> None:
        self.send = send
        self.store = store
        self.chunk_size = chunk_size

    @classmethod
    def to_kafka(
        cls, producer: AIOKafkaProducer, store: CheckpointStore, chunk_size: int
    ) -> Publisher:
        """The production publisher: ``send_batch`` to ``ticks.raw``, waiting for every ack."""
        return cls(functools.partial(kafka.send_batch, producer, TICKS_RAW), store, chunk_size)

    async def publish(self, symbol: str, rows: Sequence[Row], source: str) -> int:
        """Publish ``rows`` (oldest first) in chunks; returns the number of candles sent."""
        if not rows:
            return 0
        values = encode_batches(symbol, rows, source, time.time(), self.chunk_size)
        key = symbol.encode()
        await self.send([(key, v) for v in values])
        newest = newest_time(rows)
        if newest is not None:
            self.store.save(symbol, newest)
            metrics.LAG.labels(symbol=symbol).set(lag_seconds(newest, time.time()))
        metrics.PUBLISHED.labels(symbol=symbol, source=source).inc(len(rows))
        log.debug(
            "published",
            extra={"symbol": symbol, "candle_time": newest, "candles": len(rows), "source": source},
        )
        return len(rows)


class Poller:
    """Live polling and backfill of minute candles for a set of symbols."""

    def __init__(
        self,
        client: CryptoCompareClient,
        publisher: Publisher,
        cfg: IngestorSettings,
        clock: Callable[[], float] = time.time,
        data_dir: Path | None = None,
    ) -> None:
        self.client = client
        self.publisher = publisher
        self.cfg = cfg
        self.clock = clock  # the wall clock the live schedule follows (a seam for tests)
        self.data_dir = data_dir  # where the lake is (None: no lake to warm up from)
        self.cooldown_until = 0.0  # monotonic; set when the API asks for a long pause
        self.open_minute: dict[str, int] = {}  # per symbol, the open minute the API last showed
        self.last_report: dict[str, str] = {}  # per symbol, what the last backfill did and why

    async def collect(
        self, symbol: str, after: int | None, first_limit: int, reach_s: float = 0
    ) -> list[Row]:
        """Closed candles newer than ``after`` (oldest first); ``reach_s`` bounds a backfill."""
        page = await self.client.histominute(symbol, first_limit)
        open_time = newest_time(page.rows)
        if open_time is None:
            return []
        self.open_minute[symbol] = open_time
        if reach_s:
            floor = open_time - int(reach_s) - 60
            self.last_report[symbol] = reach_report(floor, after, open_time)
            after = floor if after is None else max(after, floor)
        pages = [page.rows]
        oldest = min(valid_times(page.rows))
        while after is not None and len(pages) < self.cfg.max_pages:
            req = page_back(oldest, after, self.cfg.page_limit)
            if req is None:
                break
            try:
                page = await self.client.histominute(symbol, req.limit, to_ts=req.to_ts)
            except HistoryUnavailable as exc:
                log.warning(
                    "gap older than the API keeps", extra={"symbol": symbol, "err": str(exc)}
                )
                break
            times = valid_times(page.rows)
            if not times or min(times) >= oldest or all(map(is_zero_row, page.rows)):
                break
            pages.append(page.rows)
            oldest = min(times)
        rows = [row for p in reversed(pages) for row in p]
        return select_new(drop_prehistory(rows), after, open_time)

    async def poll(self, symbol: str, source: str = "live", reach_s: float = 0) -> str:
        """One poll (or backfill) of ``symbol``; returns the outcome label."""
        first_limit = self.cfg.page_limit if reach_s else self.cfg.poll_limit
        if time.monotonic() < self.cooldown_until:
            metrics.POLLS.labels(symbol=symbol, outcome="cooldown").inc()
            return "cooldown"
        try:
            after = self.publisher.store.load(symbol)
            rows = await self.collect(symbol, after, first_limit, reach_s)
        except AuthRequired as exc:
            raise ConfigError(f"CryptoCompare refused the API key: {exc}") from exc
        except UpstreamError as exc:
            log.warning("poll skipped", extra={"symbol": symbol, "error": str(exc)[:200]})
            outcome = "skipped"
            retry_after = getattr(exc, "retry_after", None) or 0.0
            if retry_after > self.cfg.poll_interval_s:
                self.cooldown_until = time.monotonic() + retry_after
        else:
            sent = await self.publisher.publish(symbol, rows, source)
            outcome = "ok" if sent else "empty"
            if reach_s:
                self.last_report[symbol] = f"fetched {sent}; " + self.last_report.get(symbol, "")
            if sent:
                log.info(
                    "polled",
                    extra={"symbol": symbol, "candles": sent, "candle_time": newest_time(rows)},
                )
        metrics.POLLS.labels(symbol=symbol, outcome=outcome).inc()
        return outcome

    async def run_live(self, symbols: Sequence[str], stop: asyncio.Event) -> None:
        """Warm each symbol up, then follow it (each on its own: one slow symbol does not delay
        the others) until ``stop`` is set."""
        await asyncio.gather(*(self.warm_then_follow(s, stop) for s in symbols))

    async def warm_then_follow(self, symbol: str, stop: asyncio.Event) -> None:
        if await self.warm_up(symbol, stop):
            await self.follow(symbol, stop)

    async def warm_up(self, symbol: str, stop: asyncio.Event) -> bool:
        """Publish the history ``symbol`` lacks (``WARMUP_DAYS``) before its first live poll.

        Without a checkpoint (a new symbol, an empty broker) the lake's candles come first, then
        the API fills from there (or from ``WARMUP_DAYS`` back) to now, oldest first; with one,
        this is the gap fill after an outage. Upstream failures are retried until it succeeds
        (or ``stop``): a live poll first would put the history behind the validator's mark.
        """
        days = self.cfg.warmup_days
        if not days:
            return not stop.is_set()
        if self.publisher.store.load(symbol) is None:
            await self.from_lake(symbol, self.clock() - days * 86400)
        wait = self.cfg.retry_initial_s
        while not stop.is_set():
            outcome = await self.poll(symbol, source="backfill", reach_s=days * 86400)
            if outcome in ("ok", "empty"):
                log.info("warm", extra={"symbol": symbol, "report": self.last_report.get(symbol)})
                return True
            if await sleep_or_stop(stop, wait):
                break
            wait = min(wait * 2, self.cfg.retry_max_s)
        return False

    async def from_lake(self, symbol: str, since: float) -> int:
        """Publish the lake's candles of ``symbol`` newer than ``since`` (oldest first)."""
        if self.data_dir is None:
            return 0
        frame = lake.read_lake(self.data_dir, symbol, start=int(since))
        if frame.empty:
            return 0
        rows: list[Row] = [
            {**{str(k): v for k, v in r.items()}, "time": int(r["time"])}
            for r in frame.drop(columns="symbol").to_dict("records")
        ]
        sent = await self.publisher.publish(symbol, rows, "backfill")
        log.info("warm from the lake", extra={"symbol": symbol, "candles": sent})
        return sent

    async def follow(self, symbol: str, stop: asyncio.Event) -> None:
        """Poll ``symbol`` on the aligned schedule until ``stop``.

        Each tick (a multiple of ``POLL_INTERVAL_S``) is shifted by a lead time learnt from the
        recent showings of closed minutes; while the API still serves the minute that just ended
        as open, retry every ``ALIGN_RETRY_S`` (within ``ALIGN_WINDOW_S``). An error, a cooldown
        or an API on its own clock (a replayed or sped-up source) goes back to the schedule.
        """
        cfg, shown = self.cfg, deque[float](maxlen=5)
        catch_up = True  # right after the warm-up, a minute may have ended meanwhile
        while not stop.is_set():
            lead = lead_time(shown, cfg.align_retry_s, 0.05) if cfg.poll_align else 0.0
            tick = next_tick(self.clock(), cfg.poll_interval_s, lead) - lead
            checkpoint = self.publisher.store.load(symbol)
            previous = tick - cfg.poll_interval_s
            late = catch_up and checkpoint is not None and checkpoint < closing_minute(previous)
            tick, catch_up = (previous if late else tick), False
            if await sleep_or_stop(stop, tick + lead - self.clock()):
                return
            waiting = closing_minute(tick)
            while not stop.is_set():
                outcome = await self.poll(symbol)
                shows = self.open_minute.get(symbol)
                if outcome not in ("ok", "empty") or shows is None or not cfg.poll_align:
                    break
                if shows > waiting:  # the minute is served closed
                    if not late:  # a catch-up says nothing about the API's lag
                        shown.append(self.clock() - tick)
                    break
                if shows < waiting or self.clock() - tick > cfg.align_window_s:
                    break  # the API runs behind the wall clock: no point in hurrying
                await sleep_or_stop(stop, cfg.align_retry_s)

    async def backfill(self, symbols: Sequence[str], days: float) -> dict[str, str]:
        """Page back ``days`` for each symbol (resuming after the checkpoint), oldest first."""
        return {s: await self.poll(s, source="backfill", reach_s=days * 86400) for s in symbols}


#: The reason a backfill gives for the candles it leaves out.
BEHIND = "behind data already published"


def reach_report(floor: int, after: int | None, open_time: int) -> str:
    """What a backfill reaching back to ``floor`` skips, and why (the part behind the checkpoint).

    >>> reach_report(floor=0, after=None, open_time=600)
    'skipped 0'
    >>> reach_report(floor=0, after=540, open_time=600).split(":")[0]
    'skipped 9'
    """
    if after is None or after <= floor:
        return "skipped 0"
    behind = (min(after, open_time - MINUTE) - floor) // MINUTE
    upto = datetime.fromtimestamp(after, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"skipped {behind}: {BEHIND} (up to the candle of {upto}); the validator keeps only "
        "candles newer than what it has passed, so history goes in before live polling starts "
        "(live mode does it) or onto an empty broker"
    )


class BackfillRefused(Exception):
    """A backfill whose range lies (partly) behind what ``ticks.raw`` already holds."""


async def replay(
    publisher: Publisher,
    path: Path,
    symbol: str,
    speed: float | None,
    stop: asyncio.Event,
    resume: bool = False,
) -> int:
    """Publish a file's candles in order, paced (``speed``) or as fast as possible (None)."""
    after = publisher.store.load(symbol) if resume else None
    per_send = publisher.chunk_size * (20 if speed is None else 1)
    slices = iter_slices(path, per_send)
    groups = ((0.0, s) for s in slices) if speed is None else paced(slices, speed, 0.5, per_send)
    t0, total = time.monotonic(), 0
    for due, rows in groups:
        if stop.is_set():
            break
        if await sleep_or_stop(stop, t0 + due - time.monotonic()):
            break
        total += await publisher.publish(symbol, after_checkpoint(rows, after), "replay")
    log.info("replay finished", extra={"symbol": symbol, "candles": total, "file": str(path)})
    return total


async def kafka_is_empty(settings: Settings) -> bool:
    """True when ``ticks.raw`` holds no record at all (a fresh or restarted in-memory broker)."""
    consumer = kafka.make_consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        await consumer.topics()
        parts = consumer.partitions_for_topic(TICKS_RAW) or set()
        ends = await consumer.end_offsets([TopicPartition(TICKS_RAW, p) for p in parts])
        return not any(ends.values())
    finally:
        await consumer.stop()


def forget_checkpoints(store: CheckpointStore, symbols: Sequence[str]) -> None:
    """Checkpoints that point into a log the broker no longer holds: warm up from scratch."""
    for symbol in symbols:
        if store.load(symbol) is not None:
            log.warning("ticks.raw is empty: warming up again", extra={"symbol": symbol})
            store.forget(symbol)


def make_client(cfg: IngestorSettings) -> CryptoCompareClient:
    """The API client, refusing the real API without a key."""
    key = cfg.cryptocompare_api_key.get_secret_value() if cfg.cryptocompare_api_key else None
    require_api_key(cfg.cryptocompare_base_url, key)
    policy = RetryPolicy(
        cfg.retry_attempts, cfg.retry_budget_s, cfg.retry_initial_s, cfg.retry_max_s
    )
    return CryptoCompareClient(
        cfg.cryptocompare_base_url,
        key,
        quote=cfg.quote_symbol,
        exchange=cfg.exchange,
        timeout_s=cfg.http_timeout_s,
        retry=policy,
        limiter=rate_limiter(cfg.rate_per_second, cfg.rate_per_minute, cfg.rate_per_hour),
    )


def replay_symbol(cfg: IngestorSettings, path: Path) -> str:
    """``--symbol``, else the one the file name implies."""
    symbol = cfg.replay_symbol or symbol_from_filename(path)
    if not symbol:
        raise ConfigError(f"cannot tell the symbol of {path.name}: pass --symbol")
    return symbol.upper()


async def run(settings: Settings, cfg: IngestorSettings, stop: asyncio.Event) -> int:
    """Run the configured mode until done (backfill, replay) or ``stop`` (live)."""
    if cfg.mode == "replay" and cfg.replay_file is None:
        raise ConfigError("replay needs a file: --file PATH or INGESTOR_REPLAY_FILE")
    client = make_client(cfg) if cfg.mode != "replay" else None
    await kafka.ensure_topics(settings)
    producer = kafka.make_producer(settings)
    await producer.start()
    try:
        if cfg.mode == "replay":
            assert cfg.replay_file is not None
            store = CheckpointStore.under(settings.data_dir, "replay")
            pub = Publisher.to_kafka(producer, store, cfg.chunk_size)
            symbol, speed = replay_symbol(cfg, cfg.replay_file), parse_speed(cfg.replay_speed)
            return await replay(pub, cfg.replay_file, symbol, speed, stop, cfg.replay_resume)
        assert client is not None
        store = CheckpointStore.under(settings.data_dir)
        await reconcile(settings, store)
        if cfg.mode == "live" and await kafka_is_empty(settings):
            forget_checkpoints(store, settings.symbols)
        pub = Publisher.to_kafka(producer, store, cfg.chunk_size)
        poller = Poller(client, pub, cfg, data_dir=settings.data_dir)
        if cfg.mode == "backfill":
            outcomes = await poller.backfill(settings.symbols, cfg.backfill_days)
            for symbol, outcome in outcomes.items():
                report = poller.last_report.get(symbol, "no answer from the API")
                sys.stdout.write(f"{symbol}: {outcome}: {report}\n")
            failed = sorted(s for s, outcome in outcomes.items() if outcome == "skipped")
            if failed:
                raise UpstreamError(f"backfill incomplete for {', '.join(failed)} (see log)")
            refused = sorted(s for s in outcomes if BEHIND in poller.last_report.get(s, ""))
            if refused:
                raise BackfillRefused(
                    f"backfill refused for {', '.join(refused)}: its range lies {BEHIND} "
                    "(see above); only newer candles were fetched"
                )
        else:
            await poller.run_live(settings.symbols, stop)
        return 0
    finally:
        await producer.stop()
        if client is not None:
            await client.aclose()


def start_metrics(cfg: IngestorSettings) -> None:
    """Serve metrics; a one-shot replay/backfill next to a live ingestor goes on without them."""
    try:
        serve_metrics(cfg.metrics_port)
    except OSError as exc:
        if cfg.mode == "live":
            raise
        log.warning(
            "metrics port busy: no metrics", extra={"port": cfg.metrics_port, "err": str(exc)}
        )


async def _run_quietly(settings: Settings, cfg: IngestorSettings, stop: asyncio.Event) -> None:
    await run(settings, cfg, stop)


def serve(settings: Settings, cfg: IngestorSettings) -> int:
    """The process entry (``python -m`` and the CLI): logs, metrics, run until done or a signal.

    A configuration problem (no API key for the real API, no replay file) exits with status 2, an
    incomplete or refused backfill with 1, each with a readable message instead of a traceback;
    anything else (the broker) raises for the supervisor.
    """
    configure_logging(settings.log_level, service="ingestor")
    try:
        start_metrics(cfg)
        asyncio.run(kafka.run_until_stopped(functools.partial(_run_quietly, settings, cfg)))
    except ConfigError as exc:
        log.error("configuration error", extra={"error": str(exc)})
        sys.stderr.write(f"ingestor: {exc}\n")
        return 2
    except (UpstreamError, BackfillRefused) as exc:  # only a one-shot backfill lets one escape
        log.error("backfill incomplete or refused", extra={"error": str(exc)})
        sys.stderr.write(f"ingestor: {exc}\n")
        return 1
    return 0
