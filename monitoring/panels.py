"""The dashboard panels as plain data: title, PromQL queries, unit and the alert threshold drawn.

The Grafana generator turns these into dashboards, ``volstream report`` plots some of them, and
the live check runs every query against a real Prometheus. Queries use fixed windows (no Grafana
variables), so each one is valid PromQL as written.

    >>> threshold_of(PANELS_BY_TITLE["Data drift ratio"])
    0.15
"""

from __future__ import annotations

from dataclasses import dataclass

from monitoring.alerts import ALERTS_BY_NAME


@dataclass(frozen=True)
class Query:
    """One PromQL query and its legend (Grafana's ``{{label}}`` templating)."""

    expr: str
    legend: str = ""
    right_axis: bool = False
    """Draw on a second y axis (another unit or scale than the panel's first query)."""


@dataclass(frozen=True)
class Panel:
    """A time-series panel; ``threshold`` names ``(alert, threshold key)`` to draw as a line."""

    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    threshold: tuple[str, str] | None = None
    width: int = 12


@dataclass(frozen=True)
class Row:
    """A titled row of panels."""

    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    """A dashboard: uid (also its file name), title and rows."""

    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]


def threshold_of(panel: Panel) -> float | None:
    """The alert threshold a panel draws, read from the alert definitions."""
    if panel.threshold is None:
        return None
    alert, key = panel.threshold
    return ALERTS_BY_NAME[alert].thresholds[key]


Q = Query
SERVICE = Dashboard(
    uid="volstream-service",
    title="volstream / prediction service",
    description="The predictor's API, latency, accuracy and drift.",
    rows=(
        Row(
            "API",
            (
                Panel(
                    "Requests per second",
                    (Q("sum by (route) (volstream:http_requests:rate1m)", "{{route}}"),),
                    unit="reqps",
                ),
                Panel(
                    "Status codes",
                    (Q("sum by (status) (volstream:http_requests:rate1m)", "{{status}}"),),
                    unit="reqps",
                ),
                Panel(
                    "Request latency p50 / p95 / p99",
                    (
                        Q(
                            "volstream:http_request_duration_seconds:quantile5m",
                            "{{route}} p{{quantile}}",
                        ),
                    ),
                    unit="s",
                ),
                Panel(
                    "Prediction latency p50 / p95 / p99",
                    (Q("volstream:prediction_latency_seconds:quantile5m", "p{{quantile}}"),),
                    unit="s",
                    description="XGBoost scoring time per call; PredictionLatencyHigh watches p95.",
                    threshold=("PredictionLatencyHigh", "p95_s"),
                ),
            ),
        ),
        Row(
            "Pipeline",
            (
                Panel(
                    "Pipeline latency per stage",
                    (
                        Q(
                            'volstream:pipeline_latency_seconds:quantile5m{quantile=~"0.5|0.95"}',
                            "{{stage}} p{{quantile}}",
                        ),
                    ),
                    unit="s",
                    description="From candle close and from ingest to the published prediction.",
                ),
                Panel(
                    "Features in, predictions out",
                    (
                        Q("volstream:features_emitted:rate5m", "features/s"),
                        Q("volstream:predictions:rate1m", "predictions/s"),
                    ),
                    unit="ops",
                    description="NoPredictions fires when features flow and predictions stop.",
                ),
            ),
        ),
        Row(
            "Model",
            (
                Panel(
                    "Predicted vs realized volatility",
                    (
                        Q("model_prediction_value", "{{symbol}} {{role}} predicted"),
                        Q("model_live_rmse", "{{role}} live log-RV RMSE vs realized", True),
                    ),
                    description="The latest predicted 60-minute RV per model, and its rolling"
                    " error against the realized RV the stream revealed an hour later.",
                ),
                Panel(
                    "Live QLIKE: model vs HAR-seasonal baseline",
                    (Q("max by (role) (model_live_qlike)", "{{role}} live"),),
                    description="Rolling live QLIKE over the last day of resolved forecasts, of"
                    " the models and of the HAR-seasonal baseline on the same minutes.",
                ),
                Panel(
                    "Live QLIKE / baseline QLIKE",
                    (Q("volstream:model_qlike_vs_baseline", "{{role}}"),),
                    description="ModelAccuracyDegraded fires above the line: the model does"
                    " worse than the HAR-seasonal baseline on the same minutes.",
                    threshold=("ModelAccuracyDegraded", "ratio"),
                ),
                Panel(
                    "Loaded models",
                    (Q("model_info", "{{role}}: {{name}} v{{version}}"),),
                ),
            ),
        ),
        Row(
            "Alerts",
            (
                Panel(
                    "Model and drift alerts",
                    (
                        Q(
                            "max by (alertname) (ALERTS{"
                            'alertname=~"DataDriftHigh|ModelAccuracyDegraded",alertstate="firing"})',
                            "{{alertname}}",
                        ),
                    ),
                    description="1 while the alert fires (pending not shown).",
                    width=24,
                ),
            ),
        ),
        Row(
            "Drift",
            (
                Panel(
                    "Data drift ratio",
                    (Q("max(data_drift_ratio)", "share of drifted features"),),
                    unit="percentunit",
                    threshold=("DataDriftHigh", "ratio"),
                    width=8,
                ),
                Panel(
                    "PSI / own limit per feature",
                    (Q("feature_psi / on (feature) feature_drift_threshold", "{{feature}}"),),
                    description="Each feature's PSI over its window divided by its own limit"
                    " (the 99.9 % quantile of the training reference's windows): above 1, drift.",
                    width=8,
                ),
                Panel(
                    "Out-of-range values per feature",
                    (Q("sum by (feature) (increase(feature_ood_total[5m]))", "{{feature}}"),),
                    description="Feature values outside the training range, per 5 minutes.",
                    width=8,
                ),
            ),
        ),
    ),
)

PIPELINE = Dashboard(
    uid="volstream-pipeline",
    title="volstream / data pipeline",
    description="Ingest, validation, Kafka consumer lag and scrape targets.",
    rows=(
        Row(
            "Ingest",
            (
                Panel(
                    "Ingest lag",
                    (Q("max by (symbol) (ingestor_lag_seconds)", "{{symbol}}"),),
                    unit="s",
                    description="Now minus the close of the newest published candle.",
                    threshold=("IngestorStale", "lag_s"),
                    width=8,
                ),
                Panel(
                    "API error ratio",
                    (Q("volstream:ingestor_api_error_ratio:rate5m", "errors / polls"),),
                    unit="percentunit",
                    threshold=("IngestorStale", "error_ratio"),
                    width=8,
                ),
                Panel(
                    "Candles published per second",
                    (
                        Q(
                            "sum by (symbol, source) (rate(ingestor_candles_published_total[5m]))",
                            "{{symbol}} {{source}}",
                        ),
                    ),
                    unit="ops",
                    width=8,
                ),
            ),
        ),
        Row(
            "Data quality",
            (
                Panel(
                    "Dead letters per second by reason",
                    (Q("volstream:dead_letters:rate5m", "{{stage}}: {{reason}}"),),
                    unit="ops",
                ),
                Panel(
                    "Dead-letter ratio",
                    (Q("volstream:dead_letter_ratio:rate5m", "dead letters / records"),),
                    unit="percentunit",
                    threshold=("DeadLetterRateHigh", "ratio"),
                ),
            ),
        ),
        Row(
            "Kafka and targets",
            (
                Panel(
                    "Consumer lag per topic",
                    (Q("volstream:consumergroup_lag:sum", "{{group}} / {{topic}}"),),
                    description="Committed offsets behind the end of each topic, per group.",
                    threshold=("ConsumerLagHigh", "messages"),
                ),
                Panel(
                    "Targets up",
                    (Q("up", "{{job}}"),),
                    description="TargetDown fires when a target stays at 0 for 2 minutes.",
                ),
            ),
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (SERVICE, PIPELINE)
PANELS: tuple[Panel, ...] = tuple(p for d in DASHBOARDS for r in d.rows for p in r.panels)
PANELS_BY_TITLE: dict[str, Panel] = {p.title: p for p in PANELS}
