"""Async CryptoCompare client: one request per call, bounded retries, errors translated.

Every failure becomes an :mod:`services.ingestor.errors` type at this boundary. Retryable ones
(rate limits, 429/5xx, timeouts, connection errors, malformed bodies) are retried with exponential
back-off plus jitter, honouring ``Retry-After``, within a bounded number of tries and seconds; then
the last error is raised and the caller skips this poll. Every try first takes a permit from a
client-side rate limiter (``pyrate-limiter``: the API's per-second/minute/hour caps), so polling
many symbols waits its turn instead of being refused.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from services.ingestor import metrics
from services.ingestor.core import Page, parse_body, parse_retry_after
from services.ingestor.errors import (
    ConnectionFailed,
    IngestError,
    MalformedResponse,
    ServerError,
    TooManyRequests,
    UpstreamTimeout,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request before giving the poll up."""

    attempts: int = 4
    budget_s: float = 20.0
    initial_s: float = 0.5
    max_s: float = 8.0

    def wait(self, state: RetryCallState) -> float:
        """Exponential back-off with jitter, but never shorter than the server's Retry-After."""
        backoff = wait_exponential_jitter(
            multiplier=self.initial_s, max=self.max_s, jitter=self.initial_s
        )(state)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None) or 0.0
        return max(backoff, retry_after)


def rate_limiter(per_second: int = 0, per_minute: int = 0, per_hour: int = 0) -> Limiter | None:
    """A limiter holding every non-zero cap (None: no caps)."""
    caps = ((per_second, Duration.SECOND), (per_minute, Duration.MINUTE), (per_hour, Duration.HOUR))
    rates = [Rate(n, d) for n, d in caps if n > 0]
    return Limiter(InMemoryBucket(rates)) if rates else None


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, IngestError) and exc.retryable


class CryptoCompareClient:
    """``histominute``/``histohour`` against the real API or the emulator (``base_url``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        quote: str = "USD",
        exchange: str = "CCCAGG",
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        headers = {"authorization": f"Apikey {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout_s, transport=transport
        )
        self.quote = quote
        self.exchange = exchange
        self.retry = retry or RetryPolicy()
        self.limiter = limiter

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> CryptoCompareClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def histominute(self, symbol: str, limit: int, to_ts: int | None = None) -> Page:
        """Minute candles ending at ``to_ts`` (inclusive; default now): ``limit + 1`` rows."""
        return await self.get("/data/v2/histominute", self._params(symbol, limit, to_ts))

    async def histohour(self, symbol: str, limit: int, to_ts: int | None = None) -> Page:
        """Hour candles ending at ``to_ts`` (inclusive; default now): ``limit + 1`` rows."""
        return await self.get("/data/v2/histohour", self._params(symbol, limit, to_ts))

    def _params(self, symbol: str, limit: int, to_ts: int | None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "fsym": symbol,
            "tsym": self.quote,
            "limit": limit,
            "e": self.exchange,
        }
        if to_ts is not None:
            params["toTs"] = to_ts
        return params

    async def get(self, path: str, params: dict[str, Any]) -> Page:
        """GET with the retry policy; raises the last error once the budget is spent."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts) | stop_before_delay(self.retry.budget_s),
            wait=self.retry.wait,
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self.get_once(path, params)
        raise AssertionError("unreachable: tenacity re-raises")  # pragma: no cover

    async def get_once(self, path: str, params: dict[str, Any]) -> Page:
        """One request (after its rate-limit permit), its failure translated and counted."""
        if self.limiter is not None:
            await self.limiter.try_acquire_async("cryptocompare")
        t0 = time.perf_counter()
        try:
            return await self._request(path, params)
        except IngestError as exc:
            metrics.API_ERRORS.labels(kind=exc.kind).inc()
            log.warning(
                "upstream request failed",
                extra={"path": path, "kind": exc.kind, "error": str(exc)[:200], **params},
            )
            raise
        finally:
            metrics.HTTP_LATENCY.labels(endpoint=path).observe(time.perf_counter() - t0)

    async def _request(self, path: str, params: dict[str, Any]) -> Page:
        try:
            resp = await self.http.get(path, params=params)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{path}: {type(exc).__name__}") from exc
        except httpx.RemoteProtocolError as exc:
            raise MalformedResponse(f"{path}: broken response: {exc}") from exc
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"{path}: {type(exc).__name__}: {exc}") from exc
        retry_after = parse_retry_after(resp.headers.get("retry-after"), time.time())
        if resp.status_code == 429:
            raise TooManyRequests(f"{path}: HTTP 429", retry_after=retry_after)
        if resp.status_code != 200:
            raise ServerError(f"{path}: HTTP {resp.status_code}", retry_after=retry_after)
        return parse_body(resp.content)
