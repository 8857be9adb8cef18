"""The HTTP client: headers, parameters, error translation and the bounded retry policy.

Responses come from an ``httpx.MockTransport`` seam playing a scripted sequence of what the real
API and its proxies send (the documented bodies and statuses), so no network is needed.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import orjson
import pytest

from services.ingestor.client import CryptoCompareClient, RetryPolicy
from services.ingestor.errors import (
    AuthRequired,
    MalformedResponse,
    RateLimited,
    ServerError,
    TooManyRequests,
    UpstreamTimeout,
)

OK = {
    "Response": "Success",
    "Data": {"TimeFrom": 0, "TimeTo": 60, "Data": [{"time": 0}, {"time": 60}]},
}
FAST = RetryPolicy(attempts=4, budget_s=5.0, initial_s=0.01, max_s=0.02)


def scripted(
    responses: list[Callable[[httpx.Request], httpx.Response]], seen: list
) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses[min(len(seen), len(responses)) - 1](request)

    return httpx.MockTransport(handler)


def ok(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=orjson.dumps(OK))


def client(responses: list, seen: list, policy: RetryPolicy = FAST, key: str | None = None):
    return CryptoCompareClient(
        "http://api.test", key, transport=scripted(responses, seen), retry=policy
    )


async def test_sends_key_header_and_params() -> None:
    seen: list[httpx.Request] = []
    async with client([ok], seen, key="s3cret") as c:
        page = await c.histominute("BTC", limit=5, to_ts=600)
    assert [r["time"] for r in page.rows] == [0, 60]
    req = seen[0]
    assert req.headers["authorization"] == "Apikey s3cret"
    assert req.url.path == "/data/v2/histominute"
    assert dict(req.url.params) == {
        "fsym": "BTC",
        "tsym": "USD",
        "limit": "5",
        "e": "CCCAGG",
        "toTs": "600",
    }


async def test_no_key_no_header() -> None:
    seen: list[httpx.Request] = []
    async with client([ok], seen) as c:
        await c.histohour("ETH", limit=2)
    assert "authorization" not in seen[0].headers
    assert seen[0].url.path == "/data/v2/histohour"


@pytest.mark.parametrize(
    "failure",
    [
        lambda r: httpx.Response(500, text="oops"),
        lambda r: httpx.Response(429, headers={"Retry-After": "0"}),
        lambda r: httpx.Response(
            200, content=b'{"Response":"Error","Type":99,"Message":"over","RateLimit":{},"Data":{}}'
        ),
        lambda r: httpx.Response(200, content=b'{"Response":"Success","Data":{"Da'),
        lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=r)),
        lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)),
    ],
    ids=["500", "429", "rate-limit-body", "truncated", "timeout", "refused"],
)
async def test_transient_failures_are_retried(failure) -> None:
    seen: list[httpx.Request] = []
    async with client([failure, failure, ok], seen) as c:
        page = await c.histominute("BTC", limit=1)
    assert len(seen) == 3 and len(page.rows) == 2


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (lambda r: httpx.Response(503), ServerError),
        (lambda r: httpx.Response(429), TooManyRequests),
        (lambda r: httpx.Response(200, content=b"{"), MalformedResponse),
        (lambda r: (_ for _ in ()).throw(httpx.ConnectTimeout("t", request=r)), UpstreamTimeout),
    ],
)
async def test_budget_exhausted_raises_the_last_error(failure, error) -> None:
    seen: list[httpx.Request] = []
    async with client([failure], seen) as c:
        with pytest.raises(error):
            await c.histominute("BTC", limit=1)
    assert len(seen) == FAST.attempts


async def test_auth_errors_are_not_retried() -> None:
    body = b'{"Response":"Error","Type":1,"Message":"You need a valid auth key or api key"}'
    seen: list[httpx.Request] = []
    async with client([lambda r: httpx.Response(200, content=body)], seen) as c:
        with pytest.raises(AuthRequired):
            await c.histominute("BTC", limit=1)
    assert len(seen) == 1


async def test_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    """A Type 99 body over the daily limit asks for a day: no point sleeping inside a poll."""
    body = (
        b'{"Response":"Error","Type":99,"Message":"over","RateLimit":{"calls_made":'
        b'{"second":1,"day":7773},"max_calls":{"second":20,"day":7500}},"Data":{}}'
    )
    seen: list[httpx.Request] = []
    async with client([lambda r: httpx.Response(200, content=body), ok], seen) as c:
        with pytest.raises(RateLimited) as exc:
            await c.histominute("BTC", limit=1)
    assert exc.value.retry_after == 86400 and len(seen) == 1


def test_wait_honours_retry_after() -> None:
    import tenacity

    policy = RetryPolicy(initial_s=0.01, max_s=0.02)
    state = tenacity.RetryCallState(None, None, (), {})
    state.attempt_number = 1
    state.set_exception((TooManyRequests, TooManyRequests("x", retry_after=3.0), None))
    assert policy.wait(state) == 3.0
    state.set_exception((ServerError, ServerError("x"), None))
    assert 0.01 <= policy.wait(state) <= 0.02  # the back-off, capped
