"""The I/O of ``volstream data fetch``: download (httpx + tenacity), verify, cache, write.

A zip is only ever read after its SHA-256 matched the published ``.CHECKSUM``; verified zips are
kept in a local mirror of the archive layout, so a re-run (or a resumed one) skips what it has.
Outputs are written whole or not at all: every archive of every pair is fetched and parsed first,
then each file goes to a temporary name that atomically replaces the target.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from devstack.data_fetch.core import (
    SHARED_SCHEMA,
    Archive,
    BadArchive,
    DataFetchError,
    MissingArchive,
    combine,
    days_of,
    parse_checksum,
    parse_klines,
    previous_month,
    verify,
)
from devstack.data_fetch.settings import DataFetchSettings
from services.common import lake

log = logging.getLogger("volstream.data_fetch")


class _ServerError(Exception):
    """A 5xx answer, retried like a timeout."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError | _ServerError)


class Fetcher:
    """Downloads and verifies archives of one host into a local cache; one httpx client."""

    def __init__(
        self,
        settings: DataFetchSettings,
        base_url: str | None = None,
        console: Console | None = None,
    ) -> None:
        self.settings = settings
        self.base_url = (base_url or settings.base_url).rstrip("/")
        self.console = console or Console(stderr=True)
        self.client = httpx.Client(timeout=settings.timeout_s, follow_redirects=True)
        self.downloaded: list[Archive] = []
        self.cached: list[Archive] = []

    def close(self) -> None:
        self.client.close()

    def frame(self, archive: Archive) -> pd.DataFrame:
        """The archive's candles (shared layout), from the verified cache or a fresh download."""
        return parse_klines(_read_zip(self.zip_bytes(archive), archive), archive)

    def zip_bytes(self, archive: Archive) -> bytes:
        """The verified zip: cached if its cached checksum still matches, else downloaded."""
        local = self.settings.cache_dir / archive.path
        sums = local.with_name(local.name + ".CHECKSUM")
        if local.exists() and sums.exists():
            data = local.read_bytes()
            try:
                verify(data, parse_checksum(sums.read_text(), archive), archive)
            except DataFetchError:
                log.warning("cached archive fails its checksum; fetching it again")
            else:
                self.cached.append(archive)
                return data
        checksum_text = self._get(archive, archive.path + ".CHECKSUM", progress=False).decode()
        expected = parse_checksum(checksum_text, archive)
        data = self._get(archive, archive.path, progress=True)
        verify(data, expected, archive)
        _read_zip(data, archive)  # a published-but-broken zip is refused before it is cached
        atomic_write(local, data)
        atomic_write(sums, checksum_text.encode())
        self.downloaded.append(archive)
        return data

    def _get(self, archive: Archive, path: str, progress: bool) -> bytes:
        url = f"{self.base_url}/{path}"
        attempt = retry(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self.settings.attempts),
            wait=wait_exponential(multiplier=self.settings.retry_initial_s, max=30),
            before_sleep=lambda rs: log.warning(
                "retrying", extra={"url": url, "attempt": rs.attempt_number}
            ),
            reraise=True,
        )(self._download)
        try:
            return attempt(url, path.rsplit("/", 1)[-1], progress)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                raise MissingArchive(f"{archive.path}: not published (404 at {url})") from exc
            raise DataFetchError(f"{path}: HTTP {exc.response.status_code} at {url}") from exc
        except (httpx.TransportError, _ServerError) as exc:
            raise DataFetchError(
                f"{path}: download failed after {self.settings.attempts} attempts"
                f" ({type(exc).__name__}: {exc})"
            ) from exc

    def _download(self, url: str, name: str, progress: bool) -> bytes:
        with self.client.stream("GET", url) as resp:
            if resp.status_code >= 500:
                raise _ServerError(f"HTTP {resp.status_code}")
            resp.raise_for_status()
            total = int(resp.headers.get("content-length", 0)) or None
            buf = io.BytesIO()
            with self._bar(name, total, progress) as advance:
                for chunk in resp.iter_bytes():
                    buf.write(chunk)
                    advance(len(chunk))
            return buf.getvalue()

    @contextmanager
    def _bar(self, name: str, total: int | None, show: bool) -> Iterator:
        if not show:
            yield lambda n: None
            return
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        ) as bar:
            task = bar.add_task(name, total=total)
            yield lambda n: bar.advance(task, n)


def _read_zip(data: bytes, archive: Archive) -> bytes:
    """The CSV inside the zip; a truncated or corrupt zip is a BadArchive naming the file."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = [n for n in zf.namelist() if n.endswith(".csv")]
            if len(names) != 1:
                raise BadArchive(f"{archive.path}: expected one CSV inside, found {names}")
            return zf.read(names[0])
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise BadArchive(f"{archive.path}: truncated or corrupt zip ({exc})") from exc


def fetch_pair(fetcher: Fetcher, archives: Iterable[Archive], today: date) -> pd.DataFrame:
    """Every archive of one pair, combined (sorted, gaps left as gaps).

    Binance publishes a day's archive the next day and a month's in the first days of the next
    month, so two 404s are expected: the plan's last day (a warning; re-run later), and last
    month's archive (read day by day instead).
    """
    plan = list(archives)
    frames = []
    for archive in plan:
        try:
            frames.append(fetcher.frame(archive))
        except MissingArchive:
            if archive.daily and archive == plan[-1]:
                log.warning("the last day is not published yet", extra={"file": archive.name})
            elif not archive.daily and archive.period == previous_month(today):
                log.warning(
                    "last month is not published yet: reading its days",
                    extra={"file": archive.name},
                )
                frames += [fetcher.frame(day) for day in days_of(archive)]
            else:
                raise
    return combine(frames)


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """The shared layout, atomically (same columns and dtypes as the shared two-year file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(pa.Table.from_pandas(frame, SHARED_SCHEMA, preserve_index=False), tmp)
    os.replace(tmp, path)


def write_lake(data_dir: Path, symbol: str, frame: pd.DataFrame) -> int:
    """Merge the candles into the lake's day partitions; returns how many rows were new."""
    return lake.write_frame(data_dir, symbol, frame) if not frame.empty else 0
