"""The model gate of CI: compare a challenger's report with the champion's, write a markdown
report (CML-style, posted on the pull request), exit 1 when the challenger is worse.

Both inputs are ``volstream evaluate --json`` reports over the SAME period (keys ``n``,
``model``, ``har``... each ``{qlike, rmse, mae, r2}``). QLIKE is the loss the promotion gate
uses (trainer/gate.py), so it decides; R² and RMSE are shown for reading.

    python infra/ci/model_gate.py challenger.json champion.json --out report.md

An empty or missing champion file (no champion registered yet) passes: the first model has
nothing to beat.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METRICS = ("qlike", "rmse", "mae", "r2")
LOWER_IS_BETTER = {"qlike": True, "rmse": True, "mae": True, "r2": False}


@dataclass(frozen=True)
class Verdict:
    """The gate's answer and why."""

    passed: bool
    reason: str


def judge(challenger: dict[str, Any], champion: dict[str, Any] | None, tolerance: float) -> Verdict:
    """Pass unless the challenger's QLIKE exceeds the champion's by more than ``tolerance``.

    >>> judge({"model": {"qlike": 0.20}}, {"model": {"qlike": 0.21}}, 0.0).passed
    True
    >>> judge({"model": {"qlike": 0.25}}, {"model": {"qlike": 0.20}}, 0.1).passed
    False
    >>> judge({"model": {"qlike": 0.2}}, None, 0.0).reason
    'no champion yet: the first model passes'
    """
    if not champion:
        return Verdict(True, "no champion yet: the first model passes")
    new, old = challenger["model"]["qlike"], champion["model"]["qlike"]
    limit = old * (1 + tolerance)
    if new <= limit:
        return Verdict(
            True, f"QLIKE {new:.4f} <= {limit:.4f} (champion {old:.4f} + {tolerance:.0%})"
        )
    return Verdict(False, f"QLIKE {new:.4f} > {limit:.4f} (champion {old:.4f} + {tolerance:.0%})")


def markdown(challenger: dict[str, Any], champion: dict[str, Any] | None, verdict: Verdict) -> str:
    """The pull-request comment: a verdict line and one row per metric."""
    head = "PASS" if verdict.passed else "FAIL"
    lines = [
        f"## Model gate: {head}",
        "",
        verdict.reason,
        "",
        f"Origins scored: challenger {challenger.get('n')}, "
        f"champion {champion.get('n') if champion else '-'}",
        "",
        "| metric | challenger | champion | HAR (challenger run) | better |",
        "|---|---|---|---|---|",
    ]
    for m in METRICS:
        new = challenger["model"].get(m)
        old = champion["model"].get(m) if champion else None
        har = challenger.get("har", {}).get(m)
        lines.append(f"| {m} | {_fmt(new)} | {_fmt(old)} | {_fmt(har)} | {_better(m, new, old)} |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _better(metric: str, new: float | None, old: float | None) -> str:
    if new is None or old is None:
        return "-"
    wins = new < old if LOWER_IS_BETTER[metric] else new > old
    return "challenger" if wins else ("tie" if new == old else "champion")


def _load(path: Path) -> dict[str, Any] | None:
    """A report, or None for an absent/empty file; the last JSON line wins (CLI output)."""
    if not path.is_file() or not path.read_text().strip():
        return None
    return json.loads(path.read_text().strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("challenger", type=Path)
    p.add_argument("champion", type=Path)
    p.add_argument("--tolerance", type=float, default=0.0, help="allowed relative QLIKE excess")
    p.add_argument("--out", type=Path, default=Path("report.md"))
    args = p.parse_args(argv)
    challenger = _load(args.challenger)
    if challenger is None:
        raise SystemExit(f"model gate: no challenger report in {args.challenger}")
    champion = _load(args.champion)
    verdict = judge(challenger, champion, args.tolerance)
    args.out.write_text(markdown(challenger, champion, verdict))
    print(verdict.reason)
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
