"""Scoring a micro-batch of real feature vectors."""

from __future__ import annotations

import math

import numpy as np

from services.common.features import FEATURE_NAMES, FEATURE_VERSION, WARMUP_MINUTES
from services.predictor.core import RawRecord, feature_matrix, process, score


def records(vecs: list, topic: str = "features") -> list[RawRecord]:
    return [RawRecord(topic, 0, i, v.symbol.encode(), v.to_bytes()) for i, v in enumerate(vecs)]


def test_warm_vectors_are_scored_cold_counted(calm_features, bundle, to_vectors) -> None:
    vecs = to_vectors(calm_features.iloc[WARMUP_MINUTES - 100 : WARMUP_MINUTES + 100])
    warm = [v for v in vecs if v.warm]
    assert 0 < len(warm) < len(vecs)
    out = process(records(vecs), bundle, None)
    assert [p.time for p in out.predictions] == [v.time for v in warm]
    assert out.cold == len(vecs) - len(warm) and out.dead == []
    expected = bundle.booster.inplace_predict(
        feature_matrix([v.features for v in warm], FEATURE_NAMES)
    )
    got = np.array([p.log_rv for p in out.predictions])
    np.testing.assert_allclose(got, expected + 0.5 * math.log(bundle.bias_factor), rtol=1e-6)
    assert all(math.isclose(p.rv, math.exp(p.log_rv)) for p in out.predictions)
    assert all(p.role == "champion" and p.model_version == "1" for p in out.predictions)
    assert out.predictions[0].features_emitted_at == warm[0].emitted_at


def test_bad_vectors_become_dead_letters(calm_features, bundle, to_vectors) -> None:
    good = to_vectors(calm_features.iloc[-3:])
    other = to_vectors(calm_features.iloc[-1:], version="rv60-000000000000")[0]
    lacking = good[0].model_copy(update={"features": {"rv_5m": 0.001}})
    recs = records([*good, other, lacking])
    recs.append(RawRecord("features", 1, 7, b"BTC", b'{"symbol": "BTC"}'))
    recs.append(RawRecord("features", 1, 8, None, None))
    out = process(recs, bundle, None)
    assert len(out.predictions) == 3
    codes = [d.reasons[0].code for d in out.dead]
    assert codes == ["feature_version_mismatch", "missing_features", "malformed", "malformed"]
    assert out.dead[0].payload() == other.to_bytes() and out.dead[0].symbol == "BTC"
    assert (out.dead[2].source_partition, out.dead[2].source_offset) == (1, 7)


def test_challenger_scores_in_shadow(
    calm_candles, calm_features, bundle, make_bundle, to_vectors
) -> None:
    challenger = make_bundle(calm_candles, version="2", trees=10)
    vecs = to_vectors(calm_features.iloc[-5:])
    out = process(records(vecs), bundle, challenger)
    roles = [(p.role, p.model_version) for p in out.predictions]
    assert roles == [("champion", "1")] * 5 + [("shadow", "2")] * 5
    shadow = score(challenger, feature_matrix([v.features for v in vecs], FEATURE_NAMES))
    np.testing.assert_allclose([p.log_rv for p in out.predictions[5:]], shadow)


def test_a_challenger_of_another_feature_set_is_skipped(
    calm_candles, calm_features, bundle, make_bundle, to_vectors
) -> None:
    """Vectors the challenger cannot read are skipped in shadow (counted), never a failure."""
    import dataclasses

    challenger = make_bundle(calm_candles, version="2", trees=10)
    other = dataclasses.replace(challenger, feature_version="rv60-000000000000")
    vecs = to_vectors(calm_features.iloc[-4:])
    for recs in (records(vecs), binary_records(vecs)):
        out = process(recs, bundle, other)
        assert [p.role for p in out.predictions] == ["champion"] * 4
        assert out.shadow_skipped == 4 and out.dead == []


def test_predictions_carry_calibrated_intervals(
    calm_candles, calm_features, bundle, to_vectors
) -> None:
    """Every prediction has [rv_lo, rv_hi] around rv at the configured level; on the rows the
    calibration came from (conftest), each regime bin covers that share of the realized RV."""
    from services.common.intervals import REGIME_FEATURE, bin_index
    from trainer.dataset import log_rv_target, minute_grid

    warm = calm_features[calm_features["warm"]]
    vecs = to_vectors(warm)
    preds = process(records(vecs), bundle, None, level=0.8).predictions
    assert len(preds) == len(warm) > 1000
    assert all(p.interval_level == 0.8 and p.rv_lo < p.rv < p.rv_hi for p in preds)
    wider = process(records(vecs[:50]), bundle, None, level=0.95).predictions
    assert all(w.rv_lo < p.rv_lo and w.rv_hi > p.rv_hi for w, p in zip(wider, preds, strict=False))
    y = log_rv_target(minute_grid(calm_candles), warm["time"].to_numpy())
    ok = np.isfinite(y)
    inside = (np.log([p.rv_lo for p in preds]) <= y) & (y <= np.log([p.rv_hi for p in preds]))
    bins = bin_index(bundle.intervals, warm[REGIME_FEATURE].to_numpy())
    for b in (0, 1, 2):
        assert abs(inside[ok & (bins == b)].mean() - 0.8) < 0.01


def test_no_calibration_no_interval(calm_features, bundle, to_vectors) -> None:
    from dataclasses import replace

    plain = replace(bundle, intervals={})
    out = process(records(to_vectors(calm_features.iloc[-5:])), plain, None)
    assert all(p.rv_lo is None and p.interval_level is None for p in out.predictions)


def test_dense_scorer_gives_inplace_predict_exactly(calm_features, bundle) -> None:
    """The C API path scores as ``inplace_predict`` does: every tree, NaN as missing, one value
    per row, for a single row, a micro-batch and none."""
    from services.predictor.core import scorer_of

    warm = calm_features[calm_features["warm"]]
    x = warm[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)[:100].copy()
    x[::7, 3] = np.nan
    scorer = scorer_of(bundle.booster)
    assert scorer is scorer_of(bundle.booster)
    for rows in (x[:1], x, x[:0], x[::2]):  # x[::2]: not C-contiguous
        expected = bundle.booster.inplace_predict(rows).astype(np.float64).reshape(-1)
        np.testing.assert_array_equal(scorer(rows), expected)
    bias = 0.5 * math.log(bundle.bias_factor)
    expected = bundle.booster.inplace_predict(x).astype(np.float64) + bias
    np.testing.assert_array_equal(score(bundle, x), expected)


def test_tree_table_scores_small_batches_as_xgboost(calm_features, crash_features, bundle) -> None:
    """Micro-batches of up to TABLE_MAX_ROWS rows go through the model's TreeTable: the same
    float32 values as ``inplace_predict`` to the last bit, real rows of a calm and a crash
    period, with missing values and values beyond float32 (as XGBoost casts them)."""
    from services.predictor.core import TABLE_MAX_ROWS, scorer_of

    scorer = scorer_of(bundle.booster)
    assert scorer.table is not None  # the trainer's models are plain squared-error gbtrees
    names = list(FEATURE_NAMES)
    x = np.vstack([f[names].to_numpy(dtype=np.float64) for f in (calm_features, crash_features)])
    rng = np.random.default_rng(5)
    x = x[rng.permutation(len(x))[:600]]
    x[rng.random(x.shape) < 0.05] = np.nan
    x[rng.random(x.shape) < 0.002] *= 1e40
    for k in range(1, TABLE_MAX_ROWS + 1):
        for rows in (x[i : i + k] for i in range(0, len(x) - k, 37)):
            expected = bundle.booster.inplace_predict(rows).reshape(-1)
            np.testing.assert_array_equal(scorer.table(rows), expected)
            np.testing.assert_array_equal(scorer(rows), expected.astype(np.float64))


def test_tree_table_refused_for_a_model_it_cannot_express(calm_features, bundle) -> None:
    """A model the table cannot express (another objective's output transform), or a table
    that differs from the booster on the probe, is refused: XGBoost scores every batch."""
    import xgboost as xgb

    from services.predictor.core import TreeTable, scorer_of

    x = calm_features[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)[-300:]
    y = (np.arange(len(x)) % 2).astype(np.float64)
    logistic = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(x, y), num_boost_round=5
    )
    scorer = scorer_of(logistic)
    assert scorer.table is None
    np.testing.assert_array_equal(scorer(x[:2]), logistic.inplace_predict(x[:2]))
    booster = bundle.booster
    assert TreeTable.of(booster, lambda m: booster.inplace_predict(m)) is not None
    assert TreeTable.of(booster, lambda m: booster.inplace_predict(m) + 1e-6) is None


def test_a_scorer_goes_with_its_booster(calm_features, bundle) -> None:
    """Reloads must not pile up boosters: the scorer cache does not keep its key alive."""
    import gc

    import xgboost as xgb

    from services.predictor import core

    booster = xgb.Booster(model_file=bundle.booster.save_raw())
    x = calm_features[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)[-1:]
    core.scorer_of(booster)(x)
    before = len(core._scorers)
    del booster
    gc.collect()
    assert len(core._scorers) == before - 1


def test_predictions_are_built_and_encoded_as_validated(calm_features, bundle, to_vectors) -> None:
    """The batch's predictions equal the validated messages, field by field and as JSON; a
    batch with a value the message refuses raises as validation always did."""
    import pydantic
    import pytest

    from services.common.schemas import Prediction
    from services.predictor.core import encode_predictions

    vecs = to_vectors(calm_features[calm_features["warm"]].iloc[-50:])
    vecs[3] = vecs[3].model_copy(update={"ingested_at": None})
    out = process(records(vecs), bundle, None, level=0.8)
    assert len(out.predictions) == len(out.encoded) == 50
    for p, blob in zip(out.predictions, out.encoded, strict=True):
        validated = Prediction(**p.model_dump())
        assert p == validated and blob == validated.to_bytes() == p.to_bytes()
    log_rv = np.array([p.log_rv for p in out.predictions[:2]])
    crossed = (np.array([1.0, 2.0]), np.array([2.0, 1.0]))  # rv_lo > rv_hi on the second
    with pytest.raises(pydantic.ValidationError, match="rv_lo"):
        encode_predictions(vecs[:2], log_rv, bundle, "champion", 60, crossed, 0.8)
    with pytest.raises(pydantic.ValidationError):
        encode_predictions(vecs[:1], np.array([np.nan]), bundle, "champion", 60)


def binary_records(vecs: list, topic: str = "features") -> list[RawRecord]:
    from services.common.vector_codec import encode

    return [RawRecord(topic, 0, i, v.symbol.encode(), encode(v)) for i, v in enumerate(vecs)]


def test_binary_and_json_vectors_score_bit_identically(
    calm_candles, calm_features, bundle, make_bundle, to_vectors
) -> None:
    """The same real candles' vectors as JSON, binary, and both mixed in one batch (a rolling
    upgrade): the same scores, intervals and feature rows to the last bit, champion and shadow."""
    challenger = make_bundle(calm_candles, version="2", trees=10)
    vecs = to_vectors(calm_features.iloc[WARMUP_MINUTES - 50 : WARMUP_MINUTES + 400])
    gappy = vecs[-1].model_copy(update={"features": {**vecs[-1].features, "rv_5m": None}})
    vecs.append(gappy)  # an undefined value: None in JSON, NaN in binary
    as_json, as_binary = records(vecs), binary_records(vecs)
    mixed = [(j if i % 3 else b) for i, (j, b) in enumerate(zip(as_json, as_binary, strict=True))]
    runs = [process(recs, bundle, challenger) for recs in (as_json, as_binary, mixed)]
    assert len(runs[0].predictions) == 2 * sum(v.warm for v in vecs) > 600
    fields = ("symbol", "time", "role", "rv", "log_rv", "rv_lo", "rv_hi", "features_emitted_at")
    expect = [tuple(getattr(p, f) for f in fields) for p in runs[0].predictions]
    for out in runs[1:]:
        assert [tuple(getattr(p, f) for f in fields) for p in out.predictions] == expect
        assert out.matrix is not None and runs[0].matrix is not None
        assert out.matrix.tobytes() == runs[0].matrix.tobytes()  # NaN included
        assert out.cold == runs[0].cold and out.dead == []
    assert np.isnan(runs[1].matrix[-1, FEATURE_NAMES.index("rv_5m")])


def raw_vector(
    version: str = FEATURE_VERSION,
    symbol: bytes = b"BTC",
    n: int | None = None,
    values: list[float] | None = None,
    flags: int = 1,
    magic: int = 0xF1,
    t: int = 60,
) -> bytes:
    """A binary vector put together by hand, header field by header field (the documented
    layout), to make bad ones."""
    import struct

    values = [0.5] * len(FEATURE_NAMES) if values is None else values
    n = len(values) if n is None else n
    ver = version.encode()
    head = struct.pack("<BBHqddBB", magic, flags, n, t, math.nan, 2.0, len(symbol), len(ver))
    return head + symbol + ver + struct.pack(f"<{len(values)}d", *values)


BAD_BINARY = {
    "truncated": (raw_vector()[:-1], "malformed", "bytes, expected"),
    "shorter than a header": (raw_vector()[:12], "malformed", "shorter than its header"),
    "one value too many": (raw_vector()[:-1] + b"\0" * 9, "malformed", "bytes, expected"),
    "format 2": (raw_vector(magic=0xF2), "unknown_vector_format", "0xf2"),
    "unknown version": (raw_vector("rv60-0000"), "unknown_feature_version", "'rv60-0000'"),
    "count of values": (raw_vector(n=3, values=[0.5] * 3), "malformed", "3 values"),
    "flags": (raw_vector(flags=0x81), "malformed", "flags 0x81"),
    "symbol": (raw_vector(symbol=b"b@d"), "malformed", "symbol"),
    "negative time": (raw_vector(t=-60), "malformed", "time -60"),
    "infinite value": (
        raw_vector(values=[math.inf] + [0.5] * (len(FEATURE_NAMES) - 1)),
        "malformed",
        "infinite",
    ),
}


def test_bad_binary_vectors_become_dead_letters(bundle) -> None:
    """Every kind of bad bytes is a dead letter with a clear reason and its original bytes,
    in record order among the good vectors, which are still scored; nothing raises."""
    from services.common.vector_codec import decode

    good = raw_vector()
    recs = [RawRecord("features", 0, 0, b"BTC", good)]
    for i, (value, _code, _msg) in enumerate(BAD_BINARY.values()):
        recs += [RawRecord("features", 0, 2 * i + 1, b"BTC", value)]
        recs += [RawRecord("features", 0, 2 * i + 2, b"BTC", good)]
    out = process(recs, bundle, None)
    assert len(out.predictions) == len(BAD_BINARY) + 1
    assert [d.source_offset for d in out.dead] == [2 * i + 1 for i in range(len(BAD_BINARY))]
    for d, (name, (value, code, msg)) in zip(out.dead, BAD_BINARY.items(), strict=True):
        assert (d.codes, d.payload()) == ([code], value), name
        assert msg in d.reasons[0].message, (name, d.reasons[0].message)
    assert decode(good).features["rv_5m"] == 0.5
