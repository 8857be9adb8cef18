"""Helpers shared by the benchmarks: print a figure against its target, save results as JSON + PNG.

A target is written for people (``">= 5,000"``, ``"<= 60 s on 2 idle cores"``) and parsed once
into a machine-readable comparison (``target_op``, ``target_value``) stored next to it, so the
charts can put each measured value against its target.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

RESULTS = Path(__file__).parent / "results"

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}
_TARGET = re.compile(r"^\s*(>=|<=|==|>|<|=)?\s*([-+]?[\d,]*\.?\d+(?:[eE][-+]?\d+)?)")


class Target(NamedTuple):
    """A numeric target: ``op`` is one of ``>= <= > < ==``."""

    op: str
    value: float

    def met(self, measured: float) -> bool:
        """Whether ``measured`` meets the target.

        >>> Target("<=", 40.0).met(35.2), Target(">=", 5000.0).met(966.0)
        (True, False)
        """
        return _OPS[self.op](measured, self.value)


def parse_target(text: str) -> Target | None:
    """The comparison in a human target string, or None when it has no number.

    A bare number means equality; thousands separators and trailing words are ignored.

    >>> parse_target(">= 5,000"), parse_target("<= 60 s on 2 idle cores"), parse_target("0")
    (Target(op='>=', value=5000.0), Target(op='<=', value=60.0), Target(op='==', value=0.0))
    >>> parse_target("< -1.96"), parse_target(""), parse_target("context: other jobs")
    (Target(op='<', value=-1.96), None, None)
    """
    match = _TARGET.match(text or "")
    if not match:
        return None
    op = match.group(1) or "=="
    return Target("==" if op == "=" else op, float(match.group(2).replace(",", "")))


def figure(
    name: str, value: float, unit: str, target: str = "", ceiling: str = ""
) -> dict[str, Any]:
    """Print one figure (never asserts) and return it as a record.

    The record carries ``target_op``/``target_value`` when ``target`` holds a number.
    """
    extra = "".join(f"  [{k}: {v}]" for k, v in (("target", target), ("ceiling", ceiling)) if v)
    print(f"{name:<48} {value:>14,.3f} {unit}{extra}", flush=True)
    record: dict[str, Any] = {
        "name": name,
        "value": value,
        "unit": unit,
        "target": target,
        "ceiling": ceiling,
    }
    parsed = parse_target(target)
    if parsed:
        record |= {"target_op": parsed.op, "target_value": parsed.value}
    return record


def save(name: str, figures: list[dict[str, Any]], **meta: Any) -> Path:
    """Write ``bench/results/<name>.json``, its chart ``<name>.png`` and refresh ``summary.png``.

    ``meta`` is stored as is; a ``series`` entry (label -> list of samples) is drawn as
    distributions in the benchmark's chart. A chart that fails to draw is reported, not raised:
    the JSON is the record.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"name": name, "figures": figures, **meta}, indent=2))
    try:
        from bench import charts

        own = charts.bench_chart(
            name,
            figures,
            RESULTS / f"{name}.png",
            series=meta.get("series"),
            unit=meta.get("series_unit", ""),
            marks=meta.get("series_marks"),
        )
        drawn = [own, charts.summary_chart(RESULTS, RESULTS / "summary.png")]
        print("charts: " + ", ".join(str(p) for p in drawn if p), flush=True)
    except Exception as exc:  # a chart never costs the figures: the JSON is the record
        print(f"!!! charts for {name} not drawn: {exc!r}", flush=True)
    return path
