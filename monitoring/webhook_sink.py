"""A webhook receiver for Alertmanager that records every notification.

    python -m monitoring.webhook_sink --port 9105 --out var/alerts.jsonl

``POST`` any path: the JSON body is kept (and appended as a line to ``--out``) with the path,
which names the receiver (``/alerts/critical``). ``GET /received`` lists what arrived, so tests
and people can see what Alertmanager sent. Standard library only: it is a test double of
Slack or PagerDuty that is real enough to prove the routing.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from monitoring.targets import WEBHOOK_PORT


class Inbox:
    """Notifications received, kept in order; thread-safe."""

    def __init__(self, out: Path | None = None) -> None:
        self.out = out
        self._items: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, path: str, body: Any) -> None:
        item = {"received_at": time.time(), "path": path, "body": body}
        with self._lock:
            self._items.append(item)
            if self.out:
                with self.out.open("a") as f:
                    f.write(json.dumps(item) + "\n")

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items)


def make_handler(inbox: Inbox) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``inbox``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                self._reply(400, {"error": "body is not JSON"})
                return
            inbox.add(self.path, body)
            self._reply(200, {"status": "ok"})

        def do_GET(self) -> None:
            if self.path.rstrip("/") in ("/received", ""):
                self._reply(200, inbox.items())
            elif self.path == "/health":
                self._reply(200, {"status": "ok"})
            else:
                self._reply(404, {"error": "not found"})

        def _reply(self, status: int, doc: Any) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the inbox is the log
            pass

    return Handler


def serve(host: str, port: int, inbox: Inbox) -> ThreadingHTTPServer:
    """A started server (``shutdown()`` it); port 0 picks a free one (see ``server_port``)."""
    server = ThreadingHTTPServer((host, port), make_handler(inbox))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=WEBHOOK_PORT)
    parser.add_argument("--out", type=Path, default=None, help="append notifications here")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(Inbox(args.out)))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
