"""Stream/batch parity: compare streamed FeatureVectors with ``featurize_many`` on the same slice.

Used by the acceptance tests and the benchmark. Two values agree when both are undefined
(``None``/NaN) or when they are equal to ``rel`` relative tolerance (with a tiny absolute floor
for values that are zero in one path and round-off in the other)::

    >>> import pandas as pd
    >>> from services.common.schemas import FeatureVector
    >>> expected = pd.DataFrame({"time": [60], "warm": [True], "a": [1.0], "b": [float("nan")]})
    >>> v = FeatureVector(symbol="BTC", time=60, feature_version="x", warm=True,
    ...                   features={"a": 1.0 + 1e-12, "b": None})
    >>> compare([v], expected, names=("a", "b")).ok
    True
    >>> v2 = v.model_copy(update={"features": {"a": 1.1, "b": None}})
    >>> compare([v2], expected, names=("a", "b")).mismatches
    ['BTC@60 a: stream 1.1 != batch 1.0']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from services.common.schemas import FeatureVector

REL_TOL = 1e-9
ABS_TOL = 1e-12


@dataclass
class ParityReport:
    """How many (time, feature) cells were compared, and every disagreement (first 50)."""

    rows: int = 0
    warm_rows: int = 0
    cells: int = 0
    missing: list[int] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.mismatches


def same(a: float | None, b: float | None, rel: float = REL_TOL) -> bool:
    """True when both are undefined or both are close."""
    a_nan = a is None or math.isnan(a)
    b_nan = b is None or math.isnan(b)
    if a_nan or b_nan:
        return a_nan and b_nan
    return math.isclose(a, b, rel_tol=rel, abs_tol=ABS_TOL)  # type: ignore[arg-type]


def compare(
    vectors: Iterable[FeatureVector],
    expected: pd.DataFrame,
    names: Sequence[str],
    rel: float = REL_TOL,
    warm_only: bool = False,
) -> ParityReport:
    """Compare vectors of one symbol with the batch frame (``time``, ``warm``, names)."""
    by_time = {int(t): i for i, t in enumerate(expected["time"].to_numpy())}
    warm = expected["warm"].to_numpy()
    table = expected[list(names)].to_numpy(dtype=float)
    report = ParityReport()
    seen: set[int] = set()
    for v in vectors:
        i = by_time.get(v.time)
        if i is None:
            report.mismatches.append(f"{v.symbol}@{v.time}: not in the batch output")
            continue
        if warm_only and not warm[i]:
            continue
        seen.add(v.time)
        report.rows += 1
        report.warm_rows += int(bool(v.warm))
        if bool(v.warm) != bool(warm[i]):
            report.mismatches.append(f"{v.symbol}@{v.time} warm: stream {v.warm} != batch")
        for k, name in enumerate(names):
            report.cells += 1
            got, want = v.features.get(name), float(table[i, k])
            if not same(got, want, rel) and len(report.mismatches) < 50:
                report.mismatches.append(
                    f"{v.symbol}@{v.time} {name}: stream {got} != batch {want}"
                )
    wanted = [int(t) for t, w in zip(expected["time"], warm, strict=True) if w or not warm_only]
    report.missing = [t for t in wanted if t not in seen]
    return report
