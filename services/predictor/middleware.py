"""Pure ASGI middlewares (Starlette's BaseHTTPMiddleware costs a task per request):
HTTP metrics by route template, and a request body size limit (413)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.predictor.metrics import PredictorMetrics


class HttpMetrics:
    """``http_requests_total{method,route,status}`` and ``http_request_duration_seconds``.

    ``route`` is the matched path template (``/predictions/latest``), or ``unmatched`` for
    unknown paths, so the label set stays bounded; the labelled children are looked up once per
    label set (``labels()`` takes a lock and validates its arguments on every call).
    """

    def __init__(self, app: ASGIApp, metrics: PredictorMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        t0 = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            key = (scope["method"], getattr(scope.get("route"), "path", "unmatched"), status)
            children = self._children.get(key) or self._child(key)
            children[0].inc()
            children[1].observe(time.perf_counter() - t0)

    def _child(self, key: tuple[str, str, int]) -> tuple[Any, Any]:
        method, path, status = key
        m = self.metrics
        pair = (
            m.http_requests.labels(method, path, str(status)),
            m.http_duration.labels(method, path),
        )
        self._children[key] = pair
        return pair


class BodyLimit:
    """Refuses request bodies above ``max_bytes`` with 413: by ``Content-Length`` up front, or
    while a chunked body streams in (raised as an HTTPException the app turns into the 413)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await self._refuse(send)
            return
        if length is not None:  # the server enforces Content-Length; no need to count
            await self.app(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, self._detail())
            return message

        await self.app(scope, limited_receive, send)

    def _detail(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps({"detail": self._detail()})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
