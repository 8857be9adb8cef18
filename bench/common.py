"""Helpers shared by the benchmarks: print a figure against its target, save results as JSON + PNG.

A target is written for people (``">= 5,000"``, ``"<= 60 s on 2 idle cores"``) and parsed once
into a machine-readable comparison (``target_op``, ``target_value``) stored next to it, so the
charts can put each measured value against its target.
"""

from __future__ import annotations

import fcntl
import json
import operator
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

RESULTS = Path(__file__).parent / "results"
#: Every figure with a stable id, from every benchmark: ``{"id": {value, unit, target, ceiling}}``.
SUMMARY = "summary.json"

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
    name: str,
    value: float,
    unit: str,
    target: str = "",
    ceiling: str = "",
    *,
    id: str | None = None,
) -> dict[str, Any]:
    """Print one figure (never asserts) and return it as a record.

    The record carries ``target_op``/``target_value`` when ``target`` holds a number, and
    ``id`` when the figure is one of the stable ids that :func:`save` copies into
    ``bench/results/summary.json``.
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
    if id:
        record["id"] = id
    return record


def update_summary(figures: list[dict[str, Any]], results: Path | None = None) -> Path:
    """Merge the figures that carry an ``id`` into ``summary.json`` (the newest value wins).

    Other ids already in the file are kept, so each benchmark (and a benchmark run alone) adds
    its own; the read-modify-write runs under a file lock, so two benchmarks may save at once.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = update_summary([figure("a", 1.0, "s", "<= 2", id="x")], d)
    a                                                         1.000 s  [target: <= 2]
    >>> _ = update_summary([figure("b", 5.0, "/s", ceiling="9 /s", id="y"), {"value": 3}], d)
    b                                                         5.000 /s  [ceiling: 9 /s]
    >>> json.loads((d / SUMMARY).read_text())["x"]
    {'value': 1.0, 'unit': 's', 'target': '<= 2', 'ceiling': ''}
    >>> sorted(json.loads((d / SUMMARY).read_text()))
    ['x', 'y']
    """
    results = results or RESULTS
    results.mkdir(parents=True, exist_ok=True)
    path = results / SUMMARY
    with open(results / ".summary.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        for f in figures:
            if f.get("id"):
                doc[f["id"]] = {k: f.get(k, "") for k in ("value", "unit", "target", "ceiling")}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(sorted(doc.items())), indent=2))
        os.replace(tmp, path)
    return path


def save(name: str, figures: list[dict[str, Any]], **meta: Any) -> Path:
    """Write ``bench/results/<name>.json``, merge its ids into ``summary.json``, draw the charts.

    ``meta`` is stored as is; a ``series`` entry (label -> list of samples) is drawn as
    distributions in the benchmark's chart. A chart that fails to draw is reported, not raised:
    the JSON is the record.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"name": name, "figures": figures, **meta}, indent=2))
    update_summary(figures)
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
