"""The one definition of volstream's recording rules, alerts and their thresholds.

The rule file ``monitoring/prometheus/rules/volstream.rules.yml`` is rendered from here
(``python -m monitoring.rules``), and the Grafana generator draws the same thresholds on its panels,
so a threshold is written exactly once. Each alert keeps its thresholds apart from its expression so
tests can break one on purpose (``Alert.with_threshold``) and check the promtool tests notice.

    >>> ALERTS_BY_NAME["DataDriftHigh"].expr
    'max(data_drift_ratio) > 0.15'
    >>> ALERTS_BY_NAME["DataDriftHigh"].with_threshold("ratio", 0.3).expr
    'max(data_drift_ratio) > 0.3'
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Severity = Literal["critical", "warning"]

#: Where each alert's runbook section lives (docs/monitoring.md, one heading per alert).
RUNBOOK = "docs/monitoring.md#"

#: The predictor's count of predictions published (by model role).
PREDICTIONS_COUNTER = "predictor_predictions_total"

#: The role under which the predictor exports the HAR-seasonal baseline's live QLIKE, scored on
#: the same vectors and resolved by the same closes as the champion's.
BASELINE_ROLE = "har_seasonal"


@dataclass(frozen=True)
class Recording:
    """A recording rule: a heavy query computed once per evaluation, read by alerts and panels."""

    record: str
    expr: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Alert:
    """An alerting rule whose thresholds are named numbers formatted into ``template``.

    ``signals`` are the threshold-free queries behind the alert: they return data whenever the
    system runs, so a live check can prove the alert watches something real.
    """

    name: str
    template: str
    thresholds: dict[str, float]
    for_minutes: float
    severity: Severity
    summary: str
    description: str
    signals: tuple[str, ...]
    unit: str = ""

    @property
    def expr(self) -> str:
        """The PromQL expression with the thresholds filled in."""
        return self.template.format(**{k: _num(v) for k, v in self.thresholds.items()})

    @property
    def for_(self) -> str:
        """The ``for:`` duration in Prometheus syntax: ``5m``, or ``150s`` for fractions."""
        seconds = round(self.for_minutes * 60)
        return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"

    def with_threshold(self, key: str, value: float) -> Alert:
        """A copy with one threshold changed (tests break thresholds with it)."""
        if key not in self.thresholds:
            raise KeyError(f"{self.name} has no threshold {key!r}")
        return replace(self, thresholds={**self.thresholds, key: value})

    def with_for(self, minutes: float) -> Alert:
        """A copy with another ``for:`` duration."""
        return replace(self, for_minutes=minutes)


def _num(value: float) -> str:
    """A threshold as PromQL prints it: ``0.5``, ``300``, never ``300.0``.

    >>> _num(300.0), _num(0.15), _num(1e-05)
    ('300', '0.15', '0.00001')
    """
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.10f}".rstrip("0")


def _quantiles(record: str, metric: str, by: str, window: str = "5m") -> list[Recording]:
    """p50/p95/p99 of a histogram, one recording per quantile, labelled ``quantile``."""
    grouping = f"le, {by}" if by else "le"
    return [
        Recording(
            record,
            f"histogram_quantile({q}, sum by ({grouping}) (rate({metric}_bucket[{window}])))",
            {"quantile": q},
        )
        for q in ("0.5", "0.95", "0.99")
    ]


def _stage(expr: str, stage: str, reason: str | None = None) -> str:
    """Label a DLQ rate with its stage (and a fixed reason when the metric has none)."""
    if reason:
        expr = f'label_replace({expr}, "reason", "{reason}", "", "")'
    return f'label_replace({expr}, "stage", "{stage}", "", "")'


#: Everything sent to ticks.dlq per second, by stage and reason code.
_DEAD_LETTERS = (
    "sum by (stage, reason) ("
    + " or ".join(
        [
            _stage('rate(validator_records_total{outcome="dead_letter"}[5m])', "validator"),
            _stage(
                "sum by (reason) (rate(featurizer_late_candles_total[5m]))",
                "featurizer",
                "late_candle",
            ),
            _stage("rate(featurizer_bad_records_total[5m])", "featurizer", "bad_record"),
            _stage("rate(predictor_dead_letters_total[5m])", "predictor"),
        ]
    )
    + ")"
)

SERVING: list[Recording | Alert] = [
    Recording(
        "volstream:http_requests:rate1m", "sum by (route, status) (rate(http_requests_total[1m]))"
    ),
    *_quantiles(
        "volstream:http_request_duration_seconds:quantile5m",
        "http_request_duration_seconds",
        "route",
    ),
    *_quantiles(
        "volstream:prediction_latency_seconds:quantile5m", "prediction_latency_seconds", ""
    ),
    *_quantiles(
        "volstream:pipeline_latency_seconds:quantile5m", "pipeline_latency_seconds", "stage"
    ),
    Recording("volstream:predictions:rate1m", f"sum(rate({PREDICTIONS_COUNTER}[1m]))"),
    Recording(
        "volstream:features_emitted:rate5m", "sum(rate(featurizer_features_emitted_total[5m]))"
    ),
    Alert(
        "PredictionLatencyHigh",
        'volstream:prediction_latency_seconds:quantile5m{{quantile="0.95"}} > {p95_s}',
        {"p95_s": 0.5},
        for_minutes=5,
        severity="critical",
        summary="Prediction latency p95 is {{ $value | humanizeDuration }}",
        description="The 5-minute p95 of prediction_latency_seconds has stayed above the"
        " threshold for 5 minutes: predictions reach users late.",
        signals=('volstream:prediction_latency_seconds:quantile5m{quantile="0.95"}',),
        unit="s",
    ),
    Alert(
        "NoPredictions",
        "volstream:features_emitted:rate5m > 0 unless volstream:predictions:rate1m > 0",
        {},
        for_minutes=5,
        severity="critical",
        summary="Features are flowing but no prediction was made for 5 minutes",
        description="The featurizer emits feature vectors, yet the predictor's prediction count"
        " has not moved: the predictor is stuck, has no model, or is down.",
        signals=("volstream:features_emitted:rate5m", "volstream:predictions:rate1m"),
    ),
]

MODEL: list[Recording | Alert] = [
    Recording(
        "volstream:model_qlike_vs_baseline",
        f'max by (role) (model_live_qlike{{role!="{BASELINE_ROLE}"}})'
        f' / on () group_left () max(model_live_qlike{{role="{BASELINE_ROLE}"}})',
    ),
    Alert(
        "DataDriftHigh",
        "max(data_drift_ratio) > {ratio}",
        {"ratio": 0.15},
        for_minutes=5,
        severity="warning",
        summary="{{ $value | humanizePercentage }} of the features have drifted",
        description="The share of features beyond their own limit (PSI above the 99.9 % quantile"
        " of the training reference's own windows, or a quarter of the last hour outside the"
        " training range) has stayed above the threshold for 5 minutes: the market no longer"
        " looks like the data the model learned from.",
        signals=("max(data_drift_ratio)",),
        unit="percentunit",
    ),
    Alert(
        "ModelAccuracyDegraded",
        "volstream:model_qlike_vs_baseline > {ratio}",
        {"ratio": 1.25},
        for_minutes=30,
        severity="warning",
        summary="Live QLIKE of the {{ $labels.role }} model is {{ $value | humanize }}x"
        " the HAR-seasonal baseline's",
        description="Over the last day of resolved forecasts, the model's live QLIKE has been more"
        " than the threshold times the HAR-seasonal baseline's on the same minutes for 30"
        " minutes: the model does worse than its simple alternative, whatever the market."
        " Retrain or roll back.",
        signals=("volstream:model_qlike_vs_baseline",),
    ),
]

PIPELINE: list[Recording | Alert] = [
    Recording("volstream:validator_records:rate5m", "sum(rate(validator_records_total[5m]))"),
    Recording("volstream:dead_letters:rate5m", _DEAD_LETTERS),
    Recording(
        "volstream:dead_letter_ratio:rate5m",
        '(sum(volstream:dead_letters:rate5m{stage="validator"}) or vector(0))'
        " / volstream:validator_records:rate5m",
    ),
    Recording("volstream:consumergroup_lag:sum", "sum by (group, topic) (kafka_consumergroup_lag)"),
    Recording(
        "volstream:ingestor_api_error_ratio:rate5m",
        "(sum(rate(ingestor_api_errors_total[5m])) or vector(0))"
        " / sum(rate(ingestor_polls_total[5m]))",
    ),
    Alert(
        "DeadLetterRateHigh",
        "volstream:dead_letter_ratio:rate5m > {ratio}",
        {"ratio": 0.05},
        for_minutes=5,
        severity="warning",
        summary="{{ $value | humanizePercentage }} of the records go to the dead-letter queue",
        description="More than the threshold share of validated records was dead-lettered over"
        " 5 minutes: the source sends bad data or a stage rejects good data.",
        signals=("volstream:dead_letter_ratio:rate5m",),
        unit="percentunit",
    ),
    Recording(
        "volstream:candle_revision_ratio:rate1h",
        'sum(rate(validator_records_total{outcome="dead_letter",reason="revised"}[1h]))'
        ' / sum(rate(validator_records_total{outcome="clean"}[1h]))',
    ),
    Alert(
        "CandleRevisionsHigh",
        "volstream:candle_revision_ratio:rate1h > {ratio}",
        {"ratio": 0.02},
        for_minutes=15,
        severity="warning",
        summary="The source revised {{ $value | humanizePercentage }} of the emitted minutes",
        description="Over the last hour the market-data API re-sent more than the threshold share"
        " of already emitted minutes with other values (dead letters `revised`). The stream keeps"
        " the first values; the lake and the next training run need the batch path.",
        signals=("volstream:candle_revision_ratio:rate1h",),
        unit="percentunit",
    ),
    Alert(
        "ConsumerLagHigh",
        "volstream:consumergroup_lag:sum > {messages}",
        {"messages": 1000},
        for_minutes=5,
        severity="warning",
        summary="Group {{ $labels.group }} is {{ $value }} messages behind on {{ $labels.topic }}",
        description="A consumer group has stayed far behind the end of its topic for 5 minutes:"
        " the stage is too slow, stuck or down.",
        signals=("volstream:consumergroup_lag:sum",),
    ),
    Alert(
        "IngestorStale",
        "volstream:ingestor_api_error_ratio:rate5m > {error_ratio}"
        " or (max(ingestor_lag_seconds) > {lag_s}"
        ' unless sum(rate(ingestor_candles_published_total{{source="replay"}}[10m])) > 0)',
        {"error_ratio": 0.5, "lag_s": 300},
        for_minutes=5,
        severity="critical",
        summary="The ingestor is stale: API errors persist or the newest candle is old",
        description="For 5 minutes, either most polls of the market-data API failed or the newest"
        " candle ingested is older than the lag threshold: no fresh data enters the pipeline."
        " (The lag is not judged while a replay publishes history: replayed candles are old.)",
        signals=("volstream:ingestor_api_error_ratio:rate5m", "max(ingestor_lag_seconds)"),
        unit="s",
    ),
]

TARGETS: list[Recording | Alert] = [
    Alert(
        "TargetDown",
        "up == 0",
        {},
        for_minutes=2,
        severity="critical",
        summary="{{ $labels.job }} ({{ $labels.instance }}) is down",
        description="Prometheus could not scrape the target for 2 minutes: the process is down or"
        " its metrics endpoint is unreachable.",
        signals=("up",),
    ),
]

#: Rule groups in evaluation order; within a group, recordings come before the alerts reading them.
GROUPS: dict[str, list[Recording | Alert]] = {
    "volstream-serving": SERVING,
    "volstream-model": MODEL,
    "volstream-pipeline": PIPELINE,
    "volstream-targets": TARGETS,
}

ALERTS: list[Alert] = [r for rules in GROUPS.values() for r in rules if isinstance(r, Alert)]
ALERTS_BY_NAME: dict[str, Alert] = {a.name: a for a in ALERTS}
RECORDINGS: list[Recording] = [
    r for rules in GROUPS.values() for r in rules if isinstance(r, Recording)
]
