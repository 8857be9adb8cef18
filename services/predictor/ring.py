"""The in-memory ring of recent champion predictions behind ``GET /predictions`` and
``GET /predictions/latest``. Deduplicated by (symbol, time): a re-delivered vector replaces
its earlier prediction instead of appearing twice. The JSON of the newest prediction per symbol
is kept pre-encoded, so ``/predictions/latest`` costs one dict lookup.
"""

from __future__ import annotations

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
    """

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._by_symbol: dict[str, OrderedDict[int, Prediction]] = {}
        self._latest: dict[str, tuple[Prediction, bytes]] = {}

    def extend(self, predictions: list[Prediction]) -> None:
        """Add champion predictions (any order); older duplicates are replaced."""
        newest: dict[str, Prediction] = {}
        for p in predictions:
            book = self._by_symbol.setdefault(p.symbol, OrderedDict())
            book[p.time] = p
            while len(book) > self.size:
                book.popitem(last=False)
            if p.symbol not in newest or p.time >= newest[p.symbol].time:
                newest[p.symbol] = p
        for symbol, p in newest.items():  # encode once per symbol and batch
            cur = self._latest.get(symbol)
            if cur is None or p.time >= cur[0].time:
                self._latest[symbol] = (p, p.to_bytes())

    def latest(self, symbol: str) -> Prediction | None:
        """The newest prediction for ``symbol``."""
        cur = self._latest.get(symbol)
        return cur[0] if cur else None

    def latest_json(self, symbol: str) -> bytes | None:
        """The newest prediction for ``symbol``, already encoded as JSON."""
        cur = self._latest.get(symbol)
        return cur[1] if cur else None

    def symbols(self) -> list[str]:
        """Symbols with at least one prediction."""
        return sorted(self._latest)

    def query(self, symbol: str, since: int | None = None, limit: int = 100) -> list[Prediction]:
        """Up to ``limit`` predictions of ``symbol`` ordered by time: the first ones at or after
        ``since`` when given, else the newest ones."""
        book = self._by_symbol.get(symbol)
        if not book:
            return []
        items = sorted(book.values(), key=lambda p: p.time)
        if since is not None:
            return [p for p in items if p.time >= since][:limit]
        return items[-limit:]
