"""The in-memory ring of recent champion predictions behind ``GET /predictions`` and
``GET /predictions/latest``. Deduplicated by (symbol, time): a re-delivered vector replaces
its earlier prediction instead of appearing twice.

Predictions are kept as their encoded JSON, not as ``Prediction`` objects: the routes only ever
send JSON, and one encoded prediction takes about a third of the memory of the pydantic object
(~0.45 kB against ~1.4 kB, so a full ring of 20,000 per symbol for three symbols holds ~27 MB
instead of ~80 MB). They are stored as exact-size copies: ``orjson.dumps`` returns bytes that
keep its whole 4 kB write buffer allocated (``sys.getsizeof`` does not show it), so keeping its
output as is would take *more* memory than the objects. ``/predictions/latest`` costs one dict
lookup, ``/predictions`` a join.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict

from services.common.schemas import Prediction


class PredictionRing:
    """Newest ``size`` predictions per symbol, ordered by feature time.

    >>> ring = PredictionRing(size=2)
    >>> mk = lambda t: Prediction(symbol="BTC", time=t, rv=0.01, log_rv=-4.6, model_name="m",
    ...                           model_version="1", role="champion", feature_version="v1")
    >>> ring.extend([mk(60), mk(120), mk(180), mk(120)])
    >>> [p.time for p in ring.query("BTC")], ring.latest("BTC").time
    ([120, 180], 180)
    >>> [p.time for p in ring.query("BTC", since=150)]
    [180]
    >>> ring.query_json("BTC", since=150) == [ring.latest_json("BTC")]
    True
    """

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._by_symbol: dict[str, OrderedDict[int, bytes]] = {}
        self._latest: dict[str, tuple[int, bytes]] = {}

    def extend(self, predictions: list[Prediction], encoded: list[bytes] | None = None) -> None:
        """Add champion predictions (any order); older duplicates are replaced. ``encoded`` is
        their JSON when the caller already has it (``p.to_bytes()`` of each, same order)."""
        blobs = encoded if encoded is not None else [p.to_bytes() for p in predictions]
        size, latest, symbol_now = self.size, self._latest, None
        book: OrderedDict[int, bytes] = OrderedDict()
        newest = -1
        for p, encoded_p in zip(predictions, blobs, strict=True):
            symbol, t = p.symbol, p.time
            blob = bytes(memoryview(encoded_p))  # an exact-size copy (see the module doc)
            if symbol != symbol_now:  # a batch is mostly one symbol's
                symbol_now = symbol
                got = self._by_symbol.get(symbol)
                if got is None:
                    got = self._by_symbol[symbol] = OrderedDict()
                book = got
                cur = latest.get(symbol)
                newest = cur[0] if cur is not None else -1
            book[t] = blob
            if len(book) > size:
                book.popitem(last=False)
            if t >= newest:
                latest[symbol], newest = (t, blob), t

    def latest(self, symbol: str) -> Prediction | None:
        """The newest prediction for ``symbol``."""
        body = self.latest_json(symbol)
        return Prediction.from_bytes(body) if body is not None else None

    def latest_json(self, symbol: str) -> bytes | None:
        """The newest prediction for ``symbol``, already encoded as JSON."""
        cur = self._latest.get(symbol)
        return cur[1] if cur else None

    def symbols(self) -> list[str]:
        """Symbols with at least one prediction."""
        return sorted(self._latest)

    def query_json(self, symbol: str, since: int | None = None, limit: int = 100) -> list[bytes]:
        """Up to ``limit`` encoded predictions of ``symbol`` ordered by time: the first ones at
        or after ``since`` when given, else the newest ones."""
        book = self._by_symbol.get(symbol)
        if not book:
            return []
        times = sorted(book)
        if since is not None:
            first = bisect_left(times, since)
            times = times[first : first + limit]
        else:
            times = times[-limit:]
        return [book[t] for t in times]

    def query(self, symbol: str, since: int | None = None, limit: int = 100) -> list[Prediction]:
        """:meth:`query_json`, decoded."""
        return [Prediction.from_bytes(b) for b in self.query_json(symbol, since, limit)]
