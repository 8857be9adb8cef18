"""Targets parse into comparisons, and the charts are written from plain figure lists."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest

from bench import charts, common, rss
from bench.common import Target, figure, parse_target


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (">= 5,000", Target(">=", 5000.0)),
        ("<= 300 MB", Target("<=", 300.0)),
        ("<= 60 s on 2 idle cores", Target("<=", 60.0)),
        (">= 15 %", Target(">=", 15.0)),
        ("< -1.96", Target("<", -1.96)),
        ("< 1000", Target("<", 1000.0)),
        ("== 1,052,560", Target("==", 1_052_560.0)),
        ("0", Target("==", 0.0)),
        ("= 2.5", Target("==", 2.5)),
        (">=0.8", Target(">=", 0.8)),
        ("", None),
        ("context: other jobs", None),
    ],
)
def test_parse_target(text: str, expected: Target | None) -> None:
    assert parse_target(text) == expected


def test_target_met() -> None:
    assert Target("<=", 300).met(299.9) and not Target("<=", 300).met(300.1)
    assert Target("<", -1.96).met(-2.77) and not Target("<", -1.96).met(-1.0)
    assert Target("==", 0).met(0) and not Target("==", 0).met(1)


def test_figure_stores_the_parsed_target(capsys: pytest.CaptureFixture[str]) -> None:
    rec = figure("peak RSS: validator", 120.5, "MB", "<= 300 MB")
    assert (rec["target_op"], rec["target_value"], rec["target"]) == ("<=", 300.0, "<= 300 MB")
    assert "target_op" not in figure("context", 1.0, "", ceiling="raw 1/s")
    assert "peak RSS: validator" in capsys.readouterr().out


def test_ratio_orientation_and_zero_targets() -> None:
    assert charts.ratio({"value": 20.0, "target": "<= 40"}) == 0.5
    assert charts.ratio({"value": 10_000.0, "target_op": ">=", "target_value": 5000.0}) == 2.0
    assert charts.ratio({"value": 0, "target": "== 0"}) == 1.0
    assert charts.ratio({"value": 1e9, "target": ">= 1"}) == charts.CLIP[1]
    assert charts.ratio({"value": float("nan"), "target": ">= 1"}) is None


def _figures() -> list[dict]:
    return [
        figure("throughput", 966.0, "candles/s", ">= 5,000", "raw 26k/s"),
        figure("latency p50", 35.0, "ms", "<= 40"),
        figure("non-2xx", 0, "count", "0"),
        figure("DM stat", -2.7, "", "< -1.96"),
        figure("no target", 1.0, "s"),
    ]


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000


def test_bench_chart_with_series(tmp_path: Path) -> None:
    out = charts.bench_chart(
        "pipeline",
        _figures(),
        tmp_path / "pipeline.png",
        series={"publish→prediction": [30.0, 35.0, 80.0], "raw chain": [20.0, 25.0]},
        unit="ms",
        marks={"target p50": 40.0},
    )
    assert out == tmp_path / "pipeline.png" and _is_png(out)


def test_bench_chart_without_anything_to_draw(tmp_path: Path) -> None:
    assert charts.bench_chart("x", [figure("n", 1.0, "")], tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()


def test_save_writes_json_chart_and_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    (tmp_path / "older.json").write_text(
        json.dumps(
            {
                "name": "older",
                "figures": [{"name": "a", "value": 2.0, "unit": "", "target": ">= 1"}],
            }
        )
    )
    (tmp_path / "broken.json").write_text("{not json")
    path = common.save("unit", _figures(), series={"lat": [1.0, 2.0]}, series_unit="ms")
    assert json.loads(path.read_text())["figures"][0]["target_value"] == 5000.0
    assert _is_png(tmp_path / "unit.png") and _is_png(tmp_path / "summary.png")


def test_summary_chart_needs_a_targeted_figure(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"name": "a", "figures": []}))
    assert charts.summary_chart(tmp_path, tmp_path / "summary.png") is None


@pytest.mark.parametrize("module", [common, charts, rss])
def test_doctests(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]


def test_save_merges_stable_ids_into_summary(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    common.save("one", [figure("p50", 12.0, "ms", "<= 40", "chain 10 ms", id="latency_p50_ms")])
    common.save(
        "two", [figure("rate", 7.0, "/s", ">= 5", id="e2e_candles_per_s"), figure("x", 1, "")]
    )
    common.save("one", [figure("p50", 11.0, "ms", "<= 40", id="latency_p50_ms")])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == {
        "e2e_candles_per_s": {"value": 7.0, "unit": "/s", "target": ">= 5", "ceiling": ""},
        "latency_p50_ms": {"value": 11.0, "unit": "ms", "target": "<= 40", "ceiling": ""},
    }
