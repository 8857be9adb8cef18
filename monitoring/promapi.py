"""A small client for Prometheus's HTTP API (``/api/v1``): instant and range queries, targets,
rules and alerts. Used by ``volstream report`` and the live check.

Errors are translated at the boundary: any failure raises :class:`PrometheusError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from services.common.errors import VolstreamError


class PrometheusError(VolstreamError):
    """Prometheus is unreachable or refused a query."""


@dataclass(frozen=True)
class Series:
    """One range-query result: its labels and (unix time, value) points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


class PromClient:
    """Synchronous client; ``base_url`` like ``http://127.0.0.1:9090``."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def _get(self, path: str, **params: Any) -> Any:
        try:
            response = self.http.get(f"/api/v1/{path}", params=params)
            doc = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(f"{self.base_url}/api/v1/{path}: {exc}") from exc
        if doc.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant vector: ``[{"metric": {...}, "value": [t, "v"]}, ...]``."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        data = self._get("query", **params)
        return data["result"] if data["resultType"] == "vector" else [data]

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[Series]:
        """Matrix of a range query, values parsed to floats."""
        data = self._get("query_range", query=expr, start=start, end=end, step=step_s)
        return [
            Series(r["metric"], [(float(t), float(v)) for t, v in r["values"]])
            for r in data["result"]
        ]

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets with their health."""
        return list(self._get("targets", state="active")["activeTargets"])

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule (flattened out of its group)."""
        return [r for g in self._get("rules")["groups"] for r in g["rules"]]

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts pending or firing now."""
        return list(self._get("alerts")["alerts"])
