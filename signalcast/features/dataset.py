"""The training set of one (asset, target) and the purged split: shared by training, walk-forward
evaluation and the ensembles' out-of-fold fits, so all three see the same rows.

Rows are the candles whose features are complete and whose first-touch label resolved UP or
DOWN; EXPIRED and PENDING rows are dropped (:func:`build_training_set`, the direction model's
rows). :func:`build_outcome_set` keeps the EXPIRED rows too: the touch factor of the
three-outcome forecast needs them. ``positions`` keeps each row's place in the candle
history, which is what a purge must count in (labels look ``horizon`` candles ahead).

Features do not depend on the target: :func:`shared_features` computes them once per candle
history in a process and hands the same frame to every target, family and walk-forward fold
of a training run (:data:`FEATURE_STATS` counts computations and reuses).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from signalcast.features.engineering import FEATURE_SET, compute_features
from signalcast.features.labels import DOWN, EXPIRED, UP, first_touch_labels

FEATURE_CACHE_SIZE = 8  # candle histories whose features a process keeps (one per asset)
FEATURE_STATS = {"computed": 0, "reused": 0}
_features: OrderedDict[tuple, pd.DataFrame] = OrderedDict()
_features_lock = threading.Lock()


def _history_key(candles: pd.DataFrame, timeframe: str) -> tuple:
    """The identity of a candle history: its span, length and a digest of its values (two
    reads of the same stored candles agree; a corrected candle gives another key)."""
    digest = hashlib.blake2b(candles.to_numpy(float).tobytes(), digest_size=16).hexdigest()
    first = candles.index[0] if len(candles) else None
    last = candles.index[-1] if len(candles) else None
    return FEATURE_SET, timeframe, len(candles), first, last, digest


def shared_features(candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """:func:`compute_features` of ``candles``, computed once per history in this process
    (least recently used of :data:`FEATURE_CACHE_SIZE` histories dropped). Treat the frame
    as read-only: it is shared."""
    key = _history_key(candles[["open", "high", "low", "close", "volume"]], timeframe)
    with _features_lock:
        feats = _features.get(key)
        if feats is not None:
            _features.move_to_end(key)
            FEATURE_STATS["reused"] += 1
            return feats
    feats = compute_features(candles, timeframe)
    with _features_lock:
        FEATURE_STATS["computed"] += 1
        _features[key] = feats
        while len(_features) > FEATURE_CACHE_SIZE:
            _features.popitem(last=False)
    return feats


def clear_shared_features() -> None:
    """Forget the features kept by :func:`shared_features` (tests; a process never needs to)."""
    with _features_lock:
        _features.clear()


class MoveTarget(Protocol):
    """What a labelled set needs of a target: the move size and the horizon in candles."""

    pct: float
    horizon: int


@dataclass(frozen=True)
class TrainingSet:
    X: np.ndarray
    y: np.ndarray
    times: np.ndarray  # candle open times of the rows
    positions: np.ndarray  # row positions in the candle history (for the purge)


def build_training_set(candles: pd.DataFrame, timeframe: str, target: MoveTarget) -> TrainingSet:
    """Feature rows with a resolved UP/DOWN label (EXPIRED and PENDING rows are dropped)."""
    feats = shared_features(candles, timeframe)
    labels = first_touch_labels(candles, target.pct, target.horizon)["label"].to_numpy()
    usable = np.isin(labels, (UP, DOWN)) & ~feats.isna().any(axis=1).to_numpy()
    positions = np.flatnonzero(usable)
    return TrainingSet(feats.to_numpy()[usable], (labels[usable] == UP).astype(np.int8),
                       candles.index.to_numpy()[usable], positions)


@dataclass(frozen=True)
class OutcomeSet:
    """Resolved rows with their three-outcome labels (UP / DOWN / EXPIRED)."""

    X: np.ndarray
    labels: np.ndarray  # UP / DOWN / EXPIRED
    positions: np.ndarray  # candle positions of the rows
    times: np.ndarray

    @property
    def touched(self) -> np.ndarray:
        return self.labels != EXPIRED


def build_outcome_set(candles: pd.DataFrame, timeframe: str, pct: float,
                      horizon: int) -> OutcomeSet:
    """Feature rows with a resolved label, EXPIRED rows kept (PENDING and NaN rows dropped)."""
    feats = shared_features(candles, timeframe)
    labels = first_touch_labels(candles, pct, horizon)["label"].to_numpy()
    usable = np.isin(labels, (UP, DOWN, EXPIRED)) & ~feats.isna().any(axis=1).to_numpy()
    return OutcomeSet(feats.to_numpy()[usable], labels[usable].astype(np.int8),
                      np.flatnonzero(usable), candles.index.to_numpy()[usable])


def purged_split(positions: np.ndarray, calibration_fraction: float,
                 horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, calibration): calibration is the newest share of rows; train rows
    end ``horizon`` candles before calibration starts, so no train label sees calibration data.

    >>> train, cal = purged_split(np.arange(10), 0.3, horizon=2)
    >>> train.nonzero()[0].tolist(), cal.nonzero()[0].tolist()
    ([0, 1, 2, 3, 4], [7, 8, 9])
    """
    n_cal = max(1, int(round(len(positions) * calibration_fraction)))
    cal_start = positions[len(positions) - n_cal]
    calibration = positions >= cal_start
    train = positions + horizon < cal_start
    return train, calibration
