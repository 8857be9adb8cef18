"""A local Binance kline archive built from real candles, served over HTTP with injectable faults.

Tests (and anyone checking ``volstream data fetch`` offline) build zips in exactly the published
layout and CSV format from the shared file, then point ``--base-url`` at this server::

    python -m devstack.data_fetch.local_archive \\
        --source ../shared/data/btcusdt_1m_2023-2024.parquet --pair BTCUSDT \\
        --from 2023-01 --to 2024-12 --root /tmp/archive --port 8766

Open times are written in milliseconds up to 2024 and in microseconds from 2025 on, as published.
Faults, per file path (``Fault``): an HTTP status (e.g. 404/500) for the first ``times`` requests,
a slow answer (``delay_s`` before the headers), or a body cut short (``cut``) after announcing its
full length. A wrong checksum or a truncated zip is built on disk (``corrupt_checksum``,
``truncate_zip``), as a broken upload would look.
"""

from __future__ import annotations

import argparse
import threading
import time
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd

from devstack.data_fetch.core import Archive, checksum_line, to_kline_csv

MS, US = 1_000, 1_000_000


def published_unit(archive: Archive) -> int:
    """The unit Binance writes for a period: ms before 2025-01-01, us from then on."""
    return US if archive.period >= "2025-01" else MS


def write_archive(root: Path, archive: Archive, candles: pd.DataFrame, unit: int | None) -> Path:
    """The zip (one CSV named like it) and its ``.CHECKSUM`` under ``root``, as published."""
    path = root / archive.path
    path.parent.mkdir(parents=True, exist_ok=True)
    csv = to_kline_csv(candles, unit or published_unit(archive))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(archive.name.replace(".zip", ".csv"), csv)
    checksum(path)
    return path


def checksum(path: Path) -> None:
    """(Re)write ``path.CHECKSUM`` for the zip as it is now."""
    Path(f"{path}.CHECKSUM").write_text(checksum_line(path.read_bytes(), path.name))


def build(root: Path, pair: str, candles: pd.DataFrame, periods: list[str]) -> list[Archive]:
    """One archive per period (``YYYY-MM`` or ``YYYY-MM-DD``) from the candles inside it."""
    out = []
    for period in periods:
        archive = Archive(pair, period)
        lo, hi = archive.bounds
        write_archive(
            root, archive, candles[(candles["time"] >= lo) & (candles["time"] < hi)], None
        )
        out.append(archive)
    return out


def corrupt_checksum(root: Path, archive: Archive) -> None:
    """Publish a checksum that is not the zip's (one hex digit changed)."""
    sums = root / f"{archive.path}.CHECKSUM"
    text = sums.read_text()
    sums.write_text(("0" if text[0] != "0" else "1") + text[1:])


def truncate_zip(root: Path, archive: Archive, keep: float = 0.5) -> None:
    """Cut the zip short and publish the checksum of the cut file (a broken upload)."""
    path = root / archive.path
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    checksum(path)


@dataclass
class Fault:
    """What the server does to a path for its next ``times`` requests."""

    status: int | None = None
    delay_s: float = 0.0
    cut: bool = False
    times: int = 1_000_000


class ArchiveServer:
    """A threaded HTTP server on 127.0.0.1 serving ``root``; ``faults`` maps URL paths to Faults."""

    def __init__(self, root: Path, port: int = 0) -> None:
        self.root = root
        self.faults: dict[str, Fault] = {}
        self.requests: list[str] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> ArchiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                rel = self.path.split("?", 1)[0].lstrip("/")
                server.requests.append(rel)
                fault = server.faults.get(rel)
                active = fault is not None and fault.times > 0
                if fault is not None and active:
                    fault.times -= 1
                    time.sleep(fault.delay_s)
                    if fault.status is not None:
                        return self._send(fault.status, b"fault")
                file = (server.root / rel).resolve()
                if not file.is_relative_to(server.root.resolve()) or not file.is_file():
                    return self._send(404, b"not found")
                body = file.read_bytes()
                cut = fault is not None and active and fault.cut
                self._send(200, body, len(body) // 2 if cut else None)

            def _send(self, status: int, body: bytes, cut_at: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:cut_at] if cut_at is not None else body)
                if cut_at is not None:
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def _months(start: str, end: str) -> list[str]:
    return [p.strftime("%Y-%m") for p in pd.period_range(start, end, freq="M")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, required=True, help="shared-layout Parquet")
    p.add_argument("--pair", default="BTCUSDT")
    p.add_argument("--from", dest="start", required=True, help="first month, YYYY-MM")
    p.add_argument("--to", dest="end", required=True, help="last month, YYYY-MM")
    p.add_argument("--root", type=Path, required=True, help="where to build the archive")
    p.add_argument("--port", type=int, default=8766)
    args = p.parse_args()
    candles = pd.read_parquet(args.source)
    build(args.root, args.pair, candles, _months(args.start, args.end))
    server = ArchiveServer(args.root, args.port).start()
    print(f"serving {args.root} at {server.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
