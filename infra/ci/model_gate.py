"""The model gate's CI helpers: fetch the pinned candle file, render ``volstream gate``'s report.

The decision itself is never taken here: it is ``volstream gate``'s (exit 0 promoted, 3 refused,
anything else an error), the same code the trainer and the Airflow DAG run. This script only

    python infra/ci/model_gate.py fetch --url URL --sha256 HEX --out candles.parquet
    python infra/ci/model_gate.py report gate.json --rc 3 --out report.md

``fetch`` downloads the candle file unless a file with the pinned SHA-256 is already there, and
refuses a file with any other hash. ``report`` turns the gate's ``--json`` document into the
markdown posted on the pull request (CML): the verdict and reason, the window, every model's
QLIKE/RMSE/MAE/R², each bar the challenger had to beat and the Diebold-Mariano statistics.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

METRICS = ("qlike", "rmse", "mae", "r2")
MODELS = ("model", "champion", "har", "har_seasonal", "ewma", "persistence")


def file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fetch(url: str, sha256: str, out: Path) -> str:
    """The pinned file at ``out`` (downloaded when absent or different); its hash is checked."""
    import httpx

    if out.is_file() and file_sha256(out) == sha256:
        return f"{out}: already present, sha256 {sha256[:16]}… matches the pin"
    part = out.with_name(out.name + ".part")
    with httpx.stream("GET", url, follow_redirects=True, timeout=60) as r:
        r.raise_for_status()
        with open(part, "wb") as fh:
            for chunk in r.iter_bytes(1 << 20):
                fh.write(chunk)
    got = file_sha256(part)
    if got != sha256:
        part.unlink()
        raise SystemExit(f"model gate: {url} has sha256 {got}, the pin is {sha256}")
    part.replace(out)
    return f"{out}: downloaded from {url}, sha256 matches the pin"


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def _when(t: Any) -> str:
    import time

    return "-" if not t else time.strftime("%Y-%m-%d %H:%M", time.gmtime(float(t)))


def markdown(gate: dict[str, Any] | None, rc: int) -> str:
    """The pull-request comment.

    >>> print(markdown(None, 1).splitlines()[0])
    ## Model gate: ERROR (exit 1)
    >>> doc = {"promoted": False, "reason": "does not beat champion", "challenger": "2",
    ...        "champion": "1", "window": {"start": 0, "end": 3600, "n": 1},
    ...        "report": {"model": {"qlike": 0.2}, "champion": {"qlike": 0.19}},
    ...        "bars": {"champion": 0.19}, "dm_har_seasonal": {}}
    >>> "| champion | 0.1900 | - | - | - | 0.1900 |" in markdown(doc, 3)
    True
    """
    if not gate:
        return f"## Model gate: ERROR (exit {rc})\n\nThe gate produced no report; see the log.\n"
    head = "PROMOTED" if gate["promoted"] else "REFUSED"
    if gate.get("forced"):
        head += f" (forced: {gate.get('why')})"
    w = gate.get("window") or {}
    lines = [
        f"## Model gate: {head} (exit {rc})",
        "",
        f"Challenger v{gate.get('challenger')} vs champion v{gate.get('champion') or '-'}: "
        f"{gate['reason']}",
        "",
        f"Window: {w.get('n', 0)} hourly origins, {_when(w.get('start'))} .. {_when(w.get('end'))} "
        "UTC, after both models' training data.",
        "",
        "| model | qlike | rmse | mae | r2 | bar (qlike to beat) |",
        "|---|---|---|---|---|---|",
    ]
    report, bars = gate.get("report") or {}, gate.get("bars") or {}
    for name in MODELS:
        if name in report:
            m = report[name]
            cells = " | ".join(_fmt(m.get(k)) for k in METRICS)
            lines.append(f"| {name} | {cells} | {_fmt(bars.get(name))} |")
    for other, dm in (report.get("dm") or {}).items():
        lines.append(
            f"\nDiebold-Mariano, challenger vs {other}: {dm['stat']:+.2f} (p {dm['p_value']:.2g})"
        )
    return "\n".join(lines) + "\n"


def _load(path: Path) -> dict[str, Any] | None:
    """The gate's JSON document (its last stdout line), or None when it wrote nothing."""
    if not path.is_file() or not path.read_text().strip():
        return None
    return dict(json.loads(path.read_text().strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="get the pinned candle file")
    f.add_argument("--url", required=True)
    f.add_argument("--sha256", required=True)
    f.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("report", help="render volstream gate --json as markdown")
    r.add_argument("gate", type=Path)
    r.add_argument("--rc", type=int, required=True, help="volstream gate's exit code")
    r.add_argument("--out", type=Path, default=Path("report.md"))
    args = p.parse_args(argv)
    if args.cmd == "fetch":
        print(fetch(args.url, args.sha256, args.out))
        return 0
    args.out.write_text(markdown(_load(args.gate), args.rc))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
