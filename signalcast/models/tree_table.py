"""XGBoost trees as flat arrays, evaluated with numpy for the one row a tick predicts.

XGBoost's ``inplace_predict`` costs a fixed ~0.25 ms per call whatever the trees (argument
checks, the array interface, ctypes, the predictor's set-up); a tick calls it for every target
and factor of an XGBoost model, so on one row the fixed cost is nearly all of that model's
time. A :class:`TreeTable` holds the same trees as arrays (every node's feature, threshold,
children and default direction, every leaf its value) and walks all trees at once, one level
per numpy step: ~0.05 ms for 200 trees of depth 4.

The library stays the reference: a table is read from the booster's own JSON model, and
:func:`checked_table` keeps it only where it reproduces the library's predictions on probe rows
placed on, just above and just below split thresholds (plus missing values, which XGBoost
routes by a node's default direction); a model this module does not read exactly (another
objective, DART, categorical splits, several outputs) gets ``None`` and is served by the
library. The family uses a table for a few rows only (:data:`SMALL_BATCH`); training and
walk-forward evaluation predict thousands of rows at once, where the library is faster.
(LightGBM's one-row ``Booster.predict`` costs ~0.05 ms, and its leaf-wise trees are deep: a
table would not be faster there.)
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

SMALL_BATCH = 8  # rows up to which the family predicts through its table
# probability difference to the library beyond which a table is refused: XGBoost sums its
# leaves in float32, ~2e-7 from this module's float64 sum over 200 trees
TOLERANCE = 1e-5


@dataclass(frozen=True)
class TreeTable:
    """Every node of every tree, indexed together; a leaf's children are itself, so walking
    ``depth`` levels leaves each row on its leaf of every tree."""

    feature: np.ndarray  # int64, 0 at leaves (unused there)
    threshold: np.ndarray  # float32: a row goes left where its value (as float32) is below
    left: np.ndarray  # int64
    right: np.ndarray  # int64
    default_left: np.ndarray  # bool: where a missing value goes
    value: np.ndarray  # float64 leaf values, 0 at splits
    roots: np.ndarray  # int64, one per tree
    depth: int
    base: float  # margin added to the trees' sum (the logit of XGBoost's base_score)

    def margin(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)  # XGBoost reads features as float32
        node = np.repeat(self.roots[None, :], len(X), axis=0)
        rows = np.arange(len(X))[:, None]
        for _ in range(self.depth):
            x = X[rows, self.feature[node]]
            go_left = np.where(np.isnan(x), self.default_left[node], x < self.threshold[node])
            node = np.where(go_left, self.left[node], self.right[node])
        return self.value[node].sum(axis=1) + self.base

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(class 1): the logistic of the margin (``binary:logistic``)."""
        return 1.0 / (1.0 + np.exp(-self.margin(X)))

    def splits(self) -> np.ndarray:
        return self.left != np.arange(len(self.left))


class Unsupported(ValueError):
    """The model uses something this module does not evaluate; the library serves it."""


def xgboost_table(booster) -> TreeTable:
    """The trees of a ``binary:logistic`` gbtree booster (numeric splits, one output)."""
    learner = json.loads(bytes(booster.save_raw(raw_format="json")))["learner"]
    if learner["objective"]["name"] != "binary:logistic":
        raise Unsupported(f"objective {learner['objective']['name']}")
    if learner["gradient_booster"]["name"] != "gbtree":
        raise Unsupported(f"booster {learner['gradient_booster']['name']}")
    params = learner["learner_model_param"]
    if int(params.get("num_target", "1")) != 1 or int(params.get("num_class", "0")) > 1:
        raise Unsupported("several outputs")
    base_score = float(str(params["base_score"]).strip("[]"))
    if not 0.0 < base_score < 1.0:
        raise Unsupported(f"base_score {base_score}")
    model = learner["gradient_booster"]["model"]
    if int(model["gbtree_model_param"].get("num_parallel_tree", "1")) != 1:
        raise Unsupported("parallel trees")
    feature, threshold, left, right, default_left, value, roots = [], [], [], [], [], [], []
    depth = 0
    for tree in model["trees"]:
        if any(tree["split_type"]) or int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
            raise Unsupported("categorical or vector-leaf trees")
        kids_left, kids_right = tree["left_children"], tree["right_children"]
        offset = len(feature)
        roots.append(offset)
        for i, (lo, hi) in enumerate(zip(kids_left, kids_right, strict=True)):
            leaf = lo == -1  # a leaf's split condition is its value
            feature.append(0 if leaf else tree["split_indices"][i])
            threshold.append(0.0 if leaf else tree["split_conditions"][i])
            left.append(offset + (i if leaf else lo))
            right.append(offset + (i if leaf else hi))
            default_left.append(bool(tree["default_left"][i]))
            value.append(tree["split_conditions"][i] if leaf else 0.0)
        depth = max(depth, _depth(kids_left, kids_right))
    return TreeTable(
        feature=np.asarray(feature, dtype=np.int64),
        threshold=np.asarray(threshold, dtype=np.float32),
        left=np.asarray(left, dtype=np.int64), right=np.asarray(right, dtype=np.int64),
        default_left=np.asarray(default_left, dtype=bool),
        value=np.asarray(value, dtype=np.float64), roots=np.asarray(roots, dtype=np.int64),
        depth=depth, base=math.log(base_score / (1.0 - base_score)))


def _depth(left: list[int], right: list[int]) -> int:
    """Splits on the longest root-to-leaf path of one tree (-1: no child)."""
    depth, level = 0, [0]
    while True:
        level = [c for i in level if left[i] != -1 for c in (left[i], right[i])]
        if not level:
            return depth
        depth += 1


def probe_rows(table: TreeTable, n_features: int, count: int = 128,
               seed: int = 0) -> np.ndarray:
    """Rows whose values sit on, just above and just below the table's split thresholds
    (each feature draws from its own), some of them missing: where a misread comparison or
    default direction would send a row down another branch."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(count, n_features)).astype(np.float32)
    splits = table.splits()
    for f in range(n_features):
        thresholds = table.threshold[splits & (table.feature == f)]
        if len(thresholds):
            values = rng.choice(thresholds, size=count)
            step = rng.integers(-1, 2, size=count)  # below, on, above (float32 neighbours)
            rows[:, f] = np.where(step < 0, np.nextafter(values, np.float32(-np.inf)),
                                  np.where(step > 0, np.nextafter(values, np.float32(np.inf)),
                                           values))
    rows[rng.random(rows.shape) < 0.05] = np.nan
    return rows.astype(np.float64)


def checked_table(build: Callable[[], TreeTable], library: Callable[[np.ndarray], np.ndarray],
                  n_features: int, label: str) -> TreeTable | None:
    """``build()``'s table where it predicts the probe rows as ``library`` does (to
    :data:`TOLERANCE`); otherwise ``None`` (logged), and the library serves."""
    try:
        table = build()
    except (Unsupported, KeyError, TypeError, ValueError, IndexError) as exc:
        log.info("%s: served by the library (%s: %s)", label, type(exc).__name__, exc)
        return None
    rows = probe_rows(table, n_features)
    gap = float(np.max(np.abs(table.predict_proba(rows) - np.asarray(library(rows)))))
    if not gap <= TOLERANCE:  # NaN too
        log.warning("%s: the array form differs from the library by %.3g on probe rows; "
                    "served by the library", label, gap)
        return None
    return table
