"""Reload semantics of the monitors, read from ``/metrics`` and ``/model``: a reload of the same
version keeps every drift and accuracy series; a new version clears them until its own windows
are full enough."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from services.common.features import FEATURE_NAMES
from services.common.settings import Settings
from services.predictor.accuracy import BaselineForecast
from services.predictor.core import BatchResult
from services.predictor.models import StaticRegistry
from services.predictor.settings import PredictorSettings
from services.predictor.stream import observe_accuracy, observe_drift

DRIFT_SERIES = ("feature_psi{", "feature_drift_threshold{", "data_drift_ratio{")
ACCURACY_SERIES = ('model_live_qlike{role="champion"}', 'model_live_qlike{role="har_seasonal"}')


def series(text: str, prefix: str) -> dict[str, float]:
    """Sample lines of ``/metrics`` starting with ``prefix``: {line without value: value}."""
    out = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


@pytest.fixture(scope="module")
def second_bundle(make_bundle, calm_candles):
    """Another version, trained on a shorter stretch of the same days."""
    return make_bundle(calm_candles.iloc[: len(calm_candles) - 1440], version="2", trees=20)


async def test_same_version_keeps_series_new_version_clears_them(
    bundle, second_bundle, calm_features, calm_candles
) -> None:
    from services.predictor.app import build_service, create_app

    registry = StaticRegistry(bundle, second_bundle, champion="1")
    ps = PredictorSettings(accuracy_min_fill=50)
    service = build_service(Settings(), ps, registry)
    app = create_app(service, run_loops=False)
    assert await service.holder.reload()
    m = service.metrics
    warm = calm_features[calm_features["warm"]].iloc[-1500:]
    rows = warm[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)

    def feed(n_from: int, n_to: int) -> None:
        """Drift rows and resolvable forecasts of both roles, as the stream's fold does."""
        models = service.holder.models
        observe_drift(m, models, BatchResult(matrix=rows[n_from:n_to]), ps)
        acc = service.accuracy
        times = warm["time"].to_numpy()[n_from:n_to]
        fc = [BaselineForecast("BTC", int(t), -6.0, "champion") for t in times]
        fc += [BaselineForecast("BTC", int(t), -5.8) for t in times]
        observe_accuracy(m, acc, acc.joiner.add_predictions(fc))
        t = calm_candles["time"]
        closes = calm_candles[(t >= times[0]) & (t <= times[-1] + 3600)]
        batch = [("BTC", int(t), float(c)) for t, c in closes[["time", "close"]].to_numpy()]
        observe_accuracy(m, acc, acc.joiner.add_closes(batch))

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:

        async def scrape() -> str:
            return (await http.get("/metrics")).text

        feed(0, 1000)
        text = await scrape()
        assert not any(series(text, p) for p in DRIFT_SERIES)  # the day-long window: not full
        card = (await http.get("/model")).json()["champion"]["drift"]
        assert card["warm"] is False and card["rows"] == 1000 and card["window"] == 1440
        feed(1000, 1500)
        before = await scrape()
        psi = series(before, "feature_psi{")
        assert len(psi) > 20 and len(series(before, "feature_drift_threshold{")) == len(psi)
        assert list(series(before, "data_drift_ratio{")) == ['data_drift_ratio{version="1"}']
        assert all(series(before, p) for p in ACCURACY_SERIES)
        assert (await http.get("/model")).json()["champion"]["drift"]["warm"] is True

        # the same version again (forced): the monitor and every series stay
        assert await service.holder.reload(force=True)
        after = await scrape()
        for prefix in (*DRIFT_SERIES, *ACCURACY_SERIES):
            assert series(after, prefix) == series(before, prefix), prefix
        assert service.holder.models.champion.drift.n == 1500

        # a new version: a new monitor, and nothing it has not judged yet is exported
        registry.aliases["champion"] = "2"
        assert await service.holder.reload()
        text = await scrape()
        for prefix in (*DRIFT_SERIES, *ACCURACY_SERIES):
            assert series(text, prefix) == {}, prefix
        info = (await http.get("/model")).json()
        assert info["champion"]["version"] == "2" and info["champion"]["drift"]["rows"] == 0
        assert info["accuracy_fill"] == {}
        feed(0, 1000)
        text = await scrape()
        assert not any(series(text, p) for p in DRIFT_SERIES)
        feed(1000, 1500)
        assert list(series(await scrape(), "data_drift_ratio{")) == [
            'data_drift_ratio{version="2"}'
        ]
