"""Pure scoring: decode feature vectors, sort out the ones that cannot be scored, score the rest
in one XGBoost call per model, and build the Prediction messages.

No Kafka, HTTP or MLflow here; the I/O shell (``stream.py``, ``routes/``) feeds plain data in.
The model predicts the *log* realized volatility of the next hour; its variance bias factor
``b`` (fitted on validation) scales the variance: ``log_rv = raw + ln(b) / 2``, ``rv = e^log_rv``.
"""

from __future__ import annotations

import ctypes
import math
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

import numpy as np
import orjson

from services.common import intervals
from services.common.adaptive_intervals import AdaptiveIntervals
from services.common.errors import SchemaError
from services.common.records import TopicRecord
from services.common.schemas import (
    SCHEMA_VERSION,
    DeadLetter,
    DeadLetterReason,
    FeatureVector,
    Prediction,
    now,
)
from services.common.vector_codec import (
    F64,
    LAYOUTS,
    Decoded,
    VectorError,
    VectorHead,
    gather,
    is_binary,
    plan,
    read_binary,
)
from services.predictor.calibration import adaptive_bounds

STAGE = "predictor"


class Bundle(Protocol):
    """What scoring needs of a model (``services.common.registry.ModelBundle`` has it)."""

    @property
    def booster(self) -> Any: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def feature_names(self) -> list[str]: ...
    @property
    def feature_version(self) -> str: ...
    @property
    def bias_factor(self) -> float: ...


#: What scoring reads of a consumed record: aiokafka's ``ConsumerRecord`` as it comes (the
#: stream loop passes them on as they are), or a :class:`RawRecord`.
Record = TopicRecord


@dataclass(frozen=True)
class RawRecord:
    """One consumed record, as plain data (topic, partition, offset, key, value)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class BatchResult:
    """What one micro-batch became."""

    predictions: list[Prediction] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)  # each prediction's JSON (to_bytes())
    dead: list[DeadLetter] = field(default_factory=list)
    cold: int = 0
    matrix: np.ndarray | None = None  # champion-ordered features of the scored vectors
    scoring_s: float = 0.0
    shadow_skipped: int = 0


def feature_matrix(rows: Sequence[Mapping[str, float | None]], names: Sequence[str]) -> np.ndarray:
    """Rows in model column order as float64; ``None`` or absent becomes NaN (XGBoost's missing).

    >>> feature_matrix([{"a": 1.0, "b": None}, {"b": 2.0, "a": 3.0}], ["a", "b"]).tolist()
    [[1.0, nan], [3.0, 2.0]]
    """
    if not rows:
        return np.empty((0, len(names)))
    if len(names) > 1:  # itemgetter of one name gives a value, not a tuple
        get = itemgetter(*names)
        try:
            return np.array([get(r) for r in rows], dtype=np.float64)
        except KeyError:
            pass  # an absent feature: NaN below
    return np.array([[r.get(n) for n in names] for r in rows], dtype=np.float64)


def bias_offset(bias_factor: float) -> float:
    """What the variance bias factor adds to the model's log RV (``ln(b) / 2``).

    >>> bias_offset(math.e ** 2)
    1.0
    """
    return 0.5 * math.log(bias_factor)


#: Micro-batches up to this many rows are scored by :class:`TreeTable` (when the model allows it);
#: XGBoost's own call for more. Measured on the served model (806 trees of depth 4) with cold
#: caches, as live traffic leaves them between two candles: XGBoost ~875 µs for one row (its
#: per-call work plus a walk of 806 trees whose nodes were evicted) against ~100 µs, ~300 µs
#: against ~1 ms for 8 rows; XGBoost's blocked kernel wins from a few dozen rows on.
TABLE_MAX_ROWS = 8


class TreeTable:
    """A gradient-boosted tree ensemble as flat numpy arrays, walked for all trees at once, one
    level per step: the predictions of ``Booster.inplace_predict`` to the last bit for small
    batches, at a fraction of its cost when a row comes alone.

    XGBoost's rule, per tree: the row's value as float32 is compared with the node's float32
    split condition, ``value < condition`` goes left, a missing value (NaN) follows the node's
    default direction; the leaves' values are added to ``base_score`` tree after tree in
    float32. Children are stored in pairs (right = left + 1), so a step is ``left + (not
    go_left)``; a leaf points to itself through a constant column (0 < +inf). Only a plain
    ``gbtree`` with ``reg:squarederror``, one target and numeric splits is expressed; anything
    else, or a table that does not reproduce the booster on a probe of rows built from its own
    split conditions, is refused (:meth:`of` returns None) and XGBoost scores every batch.
    """

    def __init__(self, model: Mapping[str, Any]) -> None:
        learner = model["learner"]
        booster, param = learner["gradient_booster"], learner["learner_model_param"]
        if (
            booster.get("name") != "gbtree"
            or learner["objective"]["name"] != "reg:squarederror"
            or int(param.get("num_target", 1)) != 1
            or int(param.get("num_class", 0)) > 1
        ):
            raise ValueError("not a single-target squared-error gbtree")
        self.n_features = int(param["num_feature"])
        self.base = np.float32(float(str(param["base_score"]).strip("[]")))
        feats, conds, lefts, defaults, values, roots = [], [], [], [], [], []
        offset, depth = 0, 0
        for tree in booster["model"]["trees"]:
            if tree["categories"] or any(tree["split_type"]):
                raise ValueError("categorical splits")
            lc = np.asarray(tree["left_children"], dtype=np.int64)
            rc = np.asarray(tree["right_children"], dtype=np.int64)
            leaf = lc == -1
            if len(lc) == 0 or not np.array_equal(rc[~leaf], lc[~leaf] + 1):
                raise ValueError("children not stored in pairs")
            cond = np.asarray(tree["split_conditions"], dtype=np.float32)
            values.append(np.where(leaf, cond, np.float32(0)).astype(np.float32))
            conds.append(np.where(leaf, np.float32(np.inf), cond).astype(np.float32))
            feat = np.asarray(tree["split_indices"], dtype=np.int32)
            feats.append(np.where(leaf, self.n_features, feat).astype(np.int32))
            lefts.append(np.where(leaf, np.arange(len(lc)), lc) + offset)
            defaults.append(np.asarray(tree["default_left"], dtype=bool) | leaf)
            roots.append(offset)
            offset += len(lc)
            depth = max(depth, _depth(lc, rc))
        self.feature = np.concatenate(feats)
        self.condition = np.concatenate(conds)
        self.left = np.concatenate(lefts).astype(np.int32)
        self.default_left = np.concatenate(defaults)
        self.value = np.concatenate(values)
        self.roots = np.asarray(roots, dtype=np.int32)
        self.depth = depth

    @classmethod
    def of(cls, booster: Any, reference: Any) -> TreeTable | None:
        """The booster's table, or None when it cannot express it or differs from
        ``reference`` (the booster's own scoring of a float64 matrix) on a probe."""
        try:
            table = cls(orjson.loads(booster.save_raw("json")))
        except (ValueError, KeyError, TypeError, IndexError):
            return None
        probe = table.probe()
        return table if np.array_equal(table(probe), reference(probe)) else None

    def probe(self, rows: int = 64) -> np.ndarray:
        """Rows that take both sides of many splits: each feature at one of its split
        conditions (exactly, just below, or just above), some missing."""
        rng = np.random.default_rng(0)
        x = rng.normal(size=(rows, self.n_features))
        split = self.feature < self.n_features
        for j in range(self.n_features):
            conds = self.condition[split & (self.feature == j)].astype(np.float64)
            if len(conds):
                pick = rng.choice(conds, rows) * (1 + rng.choice([-1e-7, 0, 1e-7], rows))
                x[:, j] = pick
        x[rng.random(x.shape) < 0.1] = np.nan
        return x

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        """The ensemble's float32 prediction for each row of a float64 matrix."""
        k, width, trees = len(matrix), self.n_features + 1, len(self.roots)
        x = np.empty((k, width), dtype=np.float32)
        with np.errstate(over="ignore"):  # beyond float32 is +-inf, as XGBoost's cast
            x[:, :-1] = matrix
        x[:, -1] = 0.0
        flat = x.ravel()
        if k == 1:
            nodes, row_start = self.roots, None
        else:
            nodes = np.tile(self.roots, k)
            row_start = np.repeat(np.arange(k, dtype=np.int32) * width, trees)
        missing = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            at = self.feature[nodes]
            if row_start is not None:
                at += row_start
            v = flat[at]
            go_left = v < self.condition[nodes]
            if missing:
                go_left = np.where(np.isnan(v), self.default_left[nodes], go_left)
            nodes = self.left[nodes] + ~go_left
        sums = np.empty((k, trees + 1), dtype=np.float32)
        sums[:, 0] = self.base
        sums[:, 1:] = self.value[nodes].reshape(k, trees)
        return np.add.accumulate(sums, axis=1)[:, -1]  # tree after tree, in float32


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    """Edges from the root to the deepest leaf of one tree."""
    depth = np.zeros(len(left), dtype=np.int64)
    for i in range(len(left)):  # parents come before their children
        if left[i] != -1:
            depth[left[i]] = depth[right[i]] = depth[i] + 1
    return int(depth.max())


class DenseScorer:
    """``Booster.inplace_predict`` on a dense float64 matrix, through the XGBoost C API call it
    wraps (``XGBoosterPredictFromDense``) with the call's configuration encoded once, and,
    for micro-batches up to :data:`TABLE_MAX_ROWS` rows, through the model's
    :class:`TreeTable` when it has one.

    The wrapper's per-call work (input type dispatch, JSON of the config and of the array
    interface, wrapping the output in a new array) cost ~110 µs of a 180 µs single-row call on
    a 40-tree model on this machine; here it is ~5 µs. Same trees, same missing value (NaN),
    same float32 outputs (see ``tests/unit/predictor/test_core.py``). Thread-safe as
    ``inplace_predict`` is: the output buffer is the booster's per-thread one, copied out
    before returning; the table is read-only.
    """

    def __init__(self, booster: Any) -> None:
        from xgboost import core as xgb_core

        self._lib, self._check = xgb_core._LIB, xgb_core._check_call
        # the handle only: a reference to the booster would keep it (the cache's key) alive
        self._handle = booster.handle
        self._config = xgb_core.make_jcargs(
            type=0,  # value, not margin
            training=False,
            iteration_begin=0,
            iteration_end=0,  # every tree
            missing=math.nan,
            strict_shape=False,
            cache_id=0,
        )
        self._ulong = xgb_core.c_bst_ulong
        self.table = TreeTable.of(booster, self._xgboost)

    def __call__(self, matrix: np.ndarray, offset: float = 0.0) -> np.ndarray:
        """``inplace_predict(matrix) + offset`` as float64 (one value per row)."""
        x = np.ascontiguousarray(matrix, dtype=np.float64)
        if not len(x):
            return np.empty(0)
        if self.table is not None and len(x) <= TABLE_MAX_ROWS:
            out = self.table(x)
        else:
            out = self._xgboost(x)
        return np.add(out, offset, dtype=np.float64)

    def _xgboost(self, x: np.ndarray) -> np.ndarray:
        """XGBoost's float32 predictions of a C-contiguous float64 matrix (a view of its
        per-thread buffer)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        interface = orjson.dumps(
            {"data": (x.ctypes.data, False), "shape": x.shape, "strides": None}
            | {"typestr": "<f8", "version": 3}
        )
        shape = ctypes.POINTER(self._ulong)()
        dims = self._ulong()
        preds = ctypes.POINTER(ctypes.c_float)()
        self._check(
            self._lib.XGBoosterPredictFromDense(
                self._handle,
                interface,
                self._config,
                None,  # no proxy: no base margin
                ctypes.byref(shape),
                ctypes.byref(dims),
                ctypes.byref(preds),
            )
        )
        n = math.prod(shape[i] for i in range(dims.value))
        if n != len(x):
            raise ValueError(f"{n} outputs for {len(x)} rows: not a single-output model")
        return np.ctypeslib.as_array(preds, shape=(n,))


#: One scorer per booster, made on first use (a reload brings a new booster); an entry goes
#: with its booster, which callers hold (in their bundle) while they score.
_scorers: weakref.WeakKeyDictionary[Any, DenseScorer] = weakref.WeakKeyDictionary()


def scorer_of(booster: Any) -> DenseScorer:
    """The booster's :class:`DenseScorer`."""
    found = _scorers.get(booster)
    if found is None:
        found = _scorers[booster] = DenseScorer(booster)
    return found


def score(bundle: Bundle, matrix: np.ndarray) -> np.ndarray:
    """Log RV for each row, in one call of the booster (bias-adjusted: ``+ ln(b) / 2``)."""
    if len(matrix) == 0:
        return np.empty(0)
    return scorer_of(bundle.booster)(matrix, bias_offset(bundle.bias_factor))


def interval_bounds(
    bundle: Bundle,
    log_rv: np.ndarray,
    matrix: np.ndarray,
    level: float,
    adaptive: AdaptiveIntervals | None = None,
    vectors: Sequence[FeatureVector | VectorHead] = (),
    learn: bool = True,
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(rv_lo, rv_hi)`` of each scored row from the bundle's interval calibration, binned by
    the regime feature in ``matrix`` (the bundle's column order); None without a calibration.
    With the model's ``adaptive`` state (and the rows' ``vectors``), the live adaptive
    calibration (``learn=False``: read it without remembering the rows)."""
    cal = getattr(bundle, "intervals", None)
    if not cal or not len(log_rv) or cal["feature"] not in bundle.feature_names:
        return None
    column = matrix[:, bundle.feature_names.index(cal["feature"])]
    if adaptive is not None and len(vectors) == len(log_rv):
        return adaptive_bounds(adaptive, vectors, log_rv, column, learn)
    return intervals.bounds(cal, log_rv, column, level)


def vector_problem(
    feature_version: str, missing: Sequence[str], bundle: Bundle
) -> DeadLetterReason | None:
    """Why a vector of ``feature_version`` lacking the bundle's features ``missing`` cannot be
    scored by ``bundle``, or None when it can."""
    if feature_version != bundle.feature_version:
        msg = f"vector feature_version {feature_version!r} != model's {bundle.feature_version!r}"
        return DeadLetterReason(code="feature_version_mismatch", message=msg)
    if missing:
        return DeadLetterReason(code="missing_features", message=f"missing: {list(missing[:10])}")
    return None


def encode_predictions(
    vectors: Sequence[FeatureVector | VectorHead],
    log_rv: np.ndarray,
    bundle: Bundle,
    role: str,
    horizon: int,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    level: float | None = None,
    encode: bool = True,
) -> tuple[list[Prediction], list[bytes]]:
    """Prediction messages for scored vectors (one timestamp for the whole batch), with their
    interval when ``bounds`` (from :func:`interval_bounds`) and its ``level`` are given, and,
    with ``encode``, each one's JSON (``to_bytes()``).

    The values are checked once per batch, not per row: when every ``rv`` and bound is finite
    and every ``rv_lo <= rv_hi``, what ``Prediction`` validates holds by construction
    (``rv = e^log_rv >= 0``, the level is a setting in (0, 1); a ``log_rv`` too large raises
    in ``math.exp``, as it did), so the messages are built without re-validation
    (:meth:`~services.common.schemas.Message.trusted`) and encoded from their field dicts;
    otherwise each is validated, and raises, as it always did."""
    emitted = now()
    lrs = np.asarray(log_rv, dtype=np.float64).tolist()
    rvs = [math.exp(lr) for lr in lrs]  # math's exp, as always (numpy's differs in the last bit)
    checked = all(map(math.isfinite, rvs))  # an rv that is NaN is left to the validation
    if bounds is None or level is None:
        los: list[float | None] = [None] * len(vectors)
        his: list[float | None] = los
        level = None
    else:
        lo, hi = np.asarray(bounds[0], np.float64), np.asarray(bounds[1], np.float64)
        los, his = lo.tolist(), hi.tolist()
        ordered = np.isfinite(lo).all() and np.isfinite(hi).all() and (lo <= hi).all()
        checked = checked and bool(ordered)
    name, version = bundle.name, bundle.version
    rows = [
        {
            "schema_version": SCHEMA_VERSION,
            "symbol": fv.symbol,
            "time": fv.time,
            "horizon_minutes": horizon,
            "rv": r,
            "log_rv": lr,
            "model_name": name,
            "model_version": version,
            "role": role,
            "feature_version": fv.feature_version,
            "ingested_at": fv.ingested_at,
            "features_emitted_at": fv.emitted_at,
            "emitted_at": emitted,
            "rv_lo": lo_,
            "rv_hi": hi_,
            "interval_level": level,
        }
        for fv, r, lr, lo_, hi_ in zip(vectors, rvs, lrs, los, his, strict=True)
    ]
    if checked:
        preds = [Prediction.trusted(row) for row in rows]
    else:
        preds = [Prediction(**row) for row in rows]  # validates: raises on a bad value
    return preds, [exact_bytes(orjson.dumps(row)) for row in rows] if encode else []


def exact_bytes(encoded: bytes) -> bytes:
    """An exact-size copy of ``orjson.dumps``' output: its bytes keep the whole write buffer
    allocated (8 kB for a ~0.45 kB prediction; ``sys.getsizeof`` does not show it). A micro-batch
    of 2,000 predictions held as they come is ~16 MB in flight (queued, in the backlog until
    the next fold), and fresh 8 kB blocks cost page faults: ~13 µs per prediction against ~1 µs
    with the copy, whose buffer is freed at once and reused by the next ``dumps``.

    >>> blob = exact_bytes(orjson.dumps({"rv": 0.01}))
    >>> blob, type(blob) is bytes
    (b'{"rv":0.01}', True)
    """
    return bytes(memoryview(encoded))


def dead_letter(
    rec: Record, reason: DeadLetterReason, fv: FeatureVector | VectorHead | None
) -> DeadLetter:
    """A DLQ message around the original bytes, with where it came from."""
    return DeadLetter.wrap(
        rec.value or b"",
        stage=STAGE,
        reasons=[reason],
        source_topic=rec.topic,
        source_partition=rec.partition,
        source_offset=rec.offset,
        key=rec.key.decode("utf-8", "replace") if rec.key is not None else None,
        symbol=fv.symbol if fv is not None else None,
        event_time=fv.time if fv is not None else None,
    )


def decode(rec: Record) -> Decoded | DeadLetterReason:
    """The vector in a record as its header, its layout (feature names) and its values
    (float64 bytes in layout order), or why it is unreadable: a binary vector is read from its
    header (~2 µs, no object per value); a JSON one (before the binary format, the topic keeps
    a week) through pydantic's validation, its features dict then turned into the same form."""
    value = rec.value
    if value is None:
        return DeadLetterReason(code="malformed", message="empty value (tombstone)")
    if is_binary(value):
        try:
            return read_binary(value)
        except VectorError as exc:
            return exc.reason
    try:
        fv = FeatureVector.from_bytes(value)
    except SchemaError as exc:
        return DeadLetterReason(code="malformed", message=str(exc)[:2000])
    head = VectorHead(
        fv.symbol, fv.time, fv.feature_version, fv.warm, fv.ingested_at, fv.emitted_at
    )
    row = np.array(list(fv.features.values()), dtype=np.float64)  # None -> NaN
    return Decoded(head, _interned(tuple(fv.features)), row.tobytes())


_layouts: dict[tuple[str, ...], tuple[str, ...]] = {names: names for names in LAYOUTS.values()}


def _interned(names: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple object per layout (rows are grouped by it), for a bounded number of them."""
    found = _layouts.get(names)
    if found is None:
        if len(_layouts) > 64:
            return names
        found = _layouts[names] = names
    return found


class Vectors:
    """The scorable vectors of a micro-batch, columnar: their headers, and their values as one
    float64 block per layout (one in practice), from which :meth:`matrix` gathers any model's
    columns. The rows' bytes are kept to make a subset (:meth:`take`)."""

    def __init__(
        self, heads: list[VectorHead], layouts: list[tuple[str, ...]], values: list[bytes]
    ) -> None:
        self.heads, self.layouts, self.values = heads, layouts, values
        first = layouts[0] if layouts else ()
        groups: dict[int, tuple[tuple[str, ...], list[int]]] = {}
        if all(layout is first for layout in layouts):  # one layout: the usual case
            groups[id(first)] = (first, list(range(len(layouts))))
        else:
            for i, layout in enumerate(layouts):
                groups.setdefault(id(layout), (layout, []))[1].append(i)
        self.blocks = []
        for layout, rows in groups.values():
            raw = values[rows[0]] if len(rows) == 1 else b"".join([values[i] for i in rows])
            block = np.frombuffer(raw, dtype=F64).reshape(len(rows), len(layout))
            self.blocks.append((layout, rows, block))

    def __len__(self) -> int:
        return len(self.heads)

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        """Rows in ``names`` order as float64 (NaN for a value undefined or absent)."""
        if not self.heads:
            return np.empty((0, len(names)))
        if len(self.blocks) == 1:
            layout, _, block = self.blocks[0]
            return gather(block, layout, names)
        out = np.empty((len(self.heads), len(names)))
        for layout, rows, block in self.blocks:
            out[rows] = gather(block, layout, names)
        return out

    def infinite(self) -> list[int]:
        """Rows holding an infinite value (no encoder writes one: JSON cannot)."""
        bad: list[int] = []
        for _, rows, block in self.blocks:
            infinite = np.isinf(block)
            if infinite.any():  # one reduction in the usual case
                bad += [rows[i] for i in np.flatnonzero(infinite.any(axis=1)).tolist()]
        return sorted(bad)

    def take(self, keep: Sequence[int]) -> Vectors:
        """The rows ``keep``, in that order."""
        return Vectors(
            [self.heads[i] for i in keep],
            [self.layouts[i] for i in keep],
            [self.values[i] for i in keep],
        )

    def problems(self, bundle: Bundle) -> list[DeadLetterReason | None]:
        """Why each row cannot be scored by ``bundle`` (:func:`vector_problem`), or None."""
        names, version = bundle.feature_names, bundle.feature_version
        missing = {id(layout): plan(layout, names).missing for layout, _, _ in self.blocks}
        if not any(missing.values()) and all(h.feature_version == version for h in self.heads):
            return [None] * len(self.heads)  # the usual case, checked once per batch
        return [
            vector_problem(h.feature_version, missing[id(layout)], bundle)
            for h, layout in zip(self.heads, self.layouts, strict=True)
        ]


def triage(records: Sequence[Record], champion: Bundle) -> tuple[Vectors, BatchResult]:
    """Split records into scorable warm vectors, cold ones (counted) and dead letters (in
    record order)."""
    out = BatchResult()
    heads: list[VectorHead] = []
    layouts: list[tuple[str, ...]] = []
    values: list[bytes] = []
    kept: list[int] = []  # the record of each warm row
    dead: list[tuple[int, DeadLetter]] = []
    for at, rec in enumerate(records):
        got = decode(rec)
        if isinstance(got, DeadLetterReason):
            dead.append((at, dead_letter(rec, got, None)))
            continue
        if not got.head.warm:
            out.cold += 1
            continue
        heads.append(got.head)
        layouts.append(got.names)
        values.append(got.values)
        kept.append(at)
    warm = Vectors(heads, layouts, values)
    bad = {i: p for i, p in enumerate(warm.problems(champion)) if p is not None}
    for i in warm.infinite():  # no encoder writes one (JSON cannot): bytes made elsewhere
        bad.setdefault(i, DeadLetterReason(code="malformed", message="an infinite value"))
    if bad:
        dead += [(kept[i], dead_letter(records[kept[i]], p, heads[i])) for i, p in bad.items()]
        warm = warm.take([i for i in range(len(heads)) if i not in bad])
    out.dead = [letter for _, letter in sorted(dead, key=lambda d: d[0])]
    return warm, out


def process(
    records: Sequence[Record],
    champion: Bundle,
    challenger: Bundle | None,
    horizon: int = 60,
    level: float = intervals.DEFAULT_LEVEL,
    adaptive: tuple[AdaptiveIntervals | None, AdaptiveIntervals | None] = (None, None),
) -> BatchResult:
    """Score a micro-batch: champion predictions (with their ``level`` interval, from the
    champion's and challenger's ``adaptive`` states when given), shadow ones, dead letters,
    cold count."""
    warm, out = triage(records, champion)
    if not len(warm):
        return out
    out.matrix = warm.matrix(champion.feature_names)
    t0 = time.perf_counter()
    log_rv = score(champion, out.matrix)
    bounds = interval_bounds(champion, log_rv, out.matrix, level, adaptive[0], warm.heads)
    out.scoring_s = time.perf_counter() - t0
    out.predictions, out.encoded = encode_predictions(
        warm.heads, log_rv, champion, "champion", horizon, bounds, level
    )
    if challenger is not None:
        problems = warm.problems(challenger)
        ok = warm.take([i for i, p in enumerate(problems) if p is None])
        out.shadow_skipped = len(warm) - len(ok)
        matrix = ok.matrix(challenger.feature_names)
        shadow = score(challenger, matrix)
        bounds = interval_bounds(challenger, shadow, matrix, level, adaptive[1], ok.heads)
        preds, encoded = encode_predictions(
            ok.heads, shadow, challenger, "shadow", horizon, bounds, level
        )
        out.predictions += preds
        out.encoded += encoded
    return out
