"""Pure ASGI middlewares (Starlette's BaseHTTPMiddleware costs a task per request):
HTTP metrics by route template, a request body size limit (413), and the fast paths of
``GET /predictions/latest`` and ``POST /predict``."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.predictor.http_stats import HttpStats
from services.predictor.metrics import PredictorMetrics


class HttpMetrics:
    """``http_requests_total{method,route,status}`` and ``http_request_duration_seconds``.

    ``route`` is the matched path template (``/predictions/latest``), or ``unmatched`` for
    unknown paths, so the label set stays bounded. Per request: two clock reads and
    :meth:`HttpStats.record <services.predictor.http_stats.HttpStats.record>` (plain counts).
    """

    def __init__(self, app: ASGIApp, metrics: PredictorMetrics) -> None:
        self.app = app
        self.stats = metrics.http

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
            route = getattr(scope.get("route"), "path", "unmatched")
            self.stats.record(scope["method"], route, status, time.perf_counter() - t0)


#: The one hot read path, answered by :class:`LatestFastPath`.
LATEST_PATH = "/predictions/latest"
_JSON = b"application/json"


class LatestFastPath:
    """``GET /predictions/latest`` answered from the ring's pre-encoded JSON, before routing.

    Each prediction is encoded once, when the stream loop stores it (``PredictionRing``); the
    request only has to find it. Through FastAPI's route (routing, the request object, the
    dependency solver, the response object and its middleware layers) that lookup costs a few
    times what the lookup itself does. Here: the query string (cached per distinct string: the
    same few symbols are asked again and again), one dict lookup, two ASGI messages, one
    :class:`HttpStats` record. Only that 200 answer is served here; anything else (another
    method, a malformed or unknown symbol, so a 422 or 404) goes on to the route, which defines
    those answers, and the OpenAPI document still describes the route.
    """

    def __init__(
        self,
        app: ASGIApp,
        latest: Callable[[str], bytes | None],
        stats: HttpStats,
        pattern: str,
        default: str,
    ) -> None:
        self.app = app
        self.latest = latest
        self.stats = stats
        self._pattern = re.compile(pattern)
        self._default = default
        self._symbols: dict[bytes, str | None] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == LATEST_PATH and scope["method"] == "GET":
            t0 = time.perf_counter()
            symbol = self._symbol(scope["query_string"])
            body = self.latest(symbol) if symbol is not None else None
            if body is not None:
                await send_json(send, body)
                self.stats.record("GET", LATEST_PATH, 200, time.perf_counter() - t0)
                return
        await self.app(scope, receive, send)

    def _symbol(self, query: bytes) -> str | None:
        """The valid ``symbol`` of a query string (the route's default without one), or None:
        the route decides.
        Parsed as Starlette parses it (the last value of a repeated key wins)."""
        try:
            return self._symbols[query]
        except KeyError:
            pass
        params = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
        symbol: str | None = params.get("symbol", self._default)
        if symbol is not None and not self._pattern.match(symbol):
            symbol = None
        if len(self._symbols) >= 1024:  # bounded: arbitrary query strings cannot grow it
            self._symbols.clear()
        self._symbols[query] = symbol
        return symbol


async def send_json(send: Send, body: bytes) -> None:
    """A 200 with a JSON body: the headers Starlette's ``Response(body, media_type=JSON)``
    sends, in its order."""
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


#: The scoring path, answered by :class:`PredictFastPath`.
PREDICT_PATH = "/predict"


class PredictFastPath:
    """``POST /predict`` answered before routing, by the route's own answer function.

    The route's framework work (routing, the request object, the dependency solver, the response
    object and the middleware layers) cost more CPU than validating the body and the request's
    share of its XGBoost call together. Here: the body is read, handed to ``answer``
    (:func:`~services.predictor.routes.predictions.predict_answer`, which the route calls too,
    so every status and body is the route's), and sent. Bodies whose length is not declared or
    exceeds ``max_bytes`` go on to the route and :class:`BodyLimit` (the 413).
    """

    def __init__(
        self,
        app: ASGIApp,
        answer: Callable[[bytes], Awaitable[bytes | Response]],
        stats: HttpStats,
        max_bytes: int,
    ) -> None:
        self.app = app
        self.answer = answer
        self.stats = stats
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PREDICT_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is None or length > self.max_bytes:
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: nobody to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        status = 500  # an exception: the server's error middleware answers
        try:
            answer = await self.answer(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            if isinstance(answer, bytes):
                status = 200
                await send_json(send, answer)
            else:
                status = answer.status_code
                await answer(scope, receive, send)
        finally:
            self.stats.record("POST", PREDICT_PATH, status, time.perf_counter() - t0)


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
