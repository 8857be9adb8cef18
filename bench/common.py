"""Helpers shared by the benchmarks: print a figure against its target, save results as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def figure(
    name: str, value: float, unit: str, target: str = "", ceiling: str = ""
) -> dict[str, Any]:
    """Print one figure (never asserts) and return it as a record."""
    extra = "".join(f"  [{k}: {v}]" for k, v in (("target", target), ("ceiling", ceiling)) if v)
    print(f"{name:<48} {value:>14,.3f} {unit}{extra}", flush=True)
    return {"name": name, "value": value, "unit": unit, "target": target, "ceiling": ceiling}


def save(name: str, figures: list[dict[str, Any]], **meta: Any) -> Path:
    """Write bench/results/<name>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"name": name, "figures": figures, **meta}, indent=2))
    return path
