"""What can go wrong upstream, as :class:`~services.common.errors.UpstreamError` subtypes.

The tree::

    UpstreamError
    ├── ApiError                a ``"Response":"Error"`` body (sent with HTTP 200)
    │   ├── RateLimited         Type 99 (``retry_after`` says how long to wait)
    │   │   └── TooManyRequests HTTP 429 from a proxy, with ``Retry-After``
    │   ├── AuthRequired        Type 1: no or bad API key (not retried: a configuration problem)
    │   └── HistoryUnavailable  minute data older than 7 days (not retried: the API's own gap)
    ├── ServerError             HTTP 5xx or another unexpected status
    ├── UpstreamTimeout         connect/read timeout
    ├── ConnectionFailed        refused, reset, DNS
    └── MalformedResponse       truncated or invalid JSON, or an unknown envelope

``kind`` is the metrics label (``ingestor_api_errors_total{kind}``); ``retryable`` drives the
retry policy, so the policy never needs to know the classes.
"""

from __future__ import annotations

from services.common.errors import UpstreamError


class IngestError(UpstreamError):
    """Base of the ingestor's upstream errors."""

    kind = "upstream"
    retryable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ApiError(IngestError):
    """The API answered ``"Response":"Error"``; ``str()`` is its message."""

    kind = "api_error"
    retryable = False


class RateLimited(ApiError):
    """Over the rate limit (a Type 99 body, status 200)."""

    kind = "rate_limit"
    retryable = True


class TooManyRequests(RateLimited):
    """HTTP 429 (from the API's proxies), usually with ``Retry-After``."""

    kind = "http_429"


class AuthRequired(ApiError):
    """The API wants a valid key."""

    kind = "auth"


class HistoryUnavailable(ApiError):
    """Asked for minute data older than the API keeps."""

    kind = "history_unavailable"


class ServerError(IngestError):
    """HTTP 5xx (or any status we do not understand)."""

    kind = "http_5xx"


class UpstreamTimeout(IngestError):
    """The request timed out."""

    kind = "timeout"


class ConnectionFailed(IngestError):
    """The connection could not be made or broke."""

    kind = "connection"


class MalformedResponse(IngestError):
    """The body is not JSON, is truncated, or has an unknown shape."""

    kind = "malformed"
