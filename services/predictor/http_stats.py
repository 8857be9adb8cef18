"""``http_requests_total`` and ``http_request_duration_seconds``, kept as plain counts.

Why not a prometheus-client ``Counter`` and ``Histogram``: their ``inc``/``observe`` take a lock
each and the histogram walks its buckets in Python, about as much CPU as the rest of serving
``/predictions/latest`` from memory. Here a request costs one dict lookup and a few list
increments on the event loop (the only writer); the totals are turned into the same metric
families only when ``/metrics`` is scraped, by a custom collector (prometheus-client's API for
that). The names, labels and buckets are unchanged.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString


class HttpStats:
    """Per (method, route, status): request count, duration sum and per-bucket counts.

    >>> s = HttpStats((0.001, 0.01))
    >>> for secs in (0.0005, 0.002, 0.5):
    ...     s.record("GET", "/x", 200, secs)
    >>> s.record("GET", "/x", 404, 0.001)
    >>> {m.name: [(x.name, x.labels.get("le", x.labels.get("status")), x.value)
    ...           for x in m.samples if not x.name.endswith("_sum")] for m in s.collect()}
    ... # doctest: +NORMALIZE_WHITESPACE
    {'http_requests': [('http_requests_total', '200', 3.0), ('http_requests_total', '404', 1.0)],
     'http_request_duration_seconds': [('http_request_duration_seconds_bucket', '0.001', 2.0),
     ('http_request_duration_seconds_bucket', '0.01', 3.0),
     ('http_request_duration_seconds_bucket', '+Inf', 4.0),
     ('http_request_duration_seconds_count', None, 4.0)]}
    """

    def __init__(self, buckets: Sequence[float], registry: CollectorRegistry | None = None) -> None:
        self.bounds = sorted(float(b) for b in buckets)
        #: (method, route, status) -> [count, sum of seconds, count per bucket (+Inf last)]
        self._series: dict[tuple[str, str, int], list[float]] = {}
        if registry is not None:
            registry.register(self)

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request (``seconds``: its handling time)."""
        key = (method, route, status)
        row = self._series.get(key)
        if row is None:
            row = self._series[key] = [0.0] * (len(self.bounds) + 3)
        row[0] += 1
        row[1] += seconds
        row[2 + bisect_left(self.bounds, seconds)] += 1  # le: the first bound >= seconds

    def sample_value(self, method: str, route: str, status: int) -> float:
        """Requests counted for one label set (0 if none)."""
        row = self._series.get((method, route, status))
        return row[0] if row else 0.0

    def collect(self) -> Iterator[Metric]:
        """The two metric families (called by the registry on each scrape, possibly from the
        metrics port's thread: it works on a snapshot)."""
        series = [(k, list(v)) for k, v in list(self._series.items())]
        requests = CounterMetricFamily(
            "http_requests", "HTTP requests", labels=["method", "route", "status"]
        )
        merged: dict[tuple[str, str], list[float]] = {}
        for (method, route, status), row in sorted(series):
            requests.add_metric([method, route, str(status)], row[0])
            acc = merged.setdefault((method, route), [0.0] * len(row))
            for i, x in enumerate(row):
                acc[i] += x
        yield requests
        duration = HistogramMetricFamily(
            "http_request_duration_seconds",
            "HTTP request handling time",
            labels=["method", "route"],
        )
        les = [*(floatToGoString(b) for b in self.bounds), "+Inf"]
        for (method, route), row in merged.items():
            cumulative, running = [], 0.0
            for le, n in zip(les, row[2:], strict=True):
                running += n
                cumulative.append((le, running))
            duration.add_metric([method, route], cumulative, row[1])
        yield duration
