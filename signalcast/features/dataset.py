"""The training set of one (asset, target) and the purged split: shared by training, walk-forward
evaluation and the ensembles' out-of-fold fits, so all three see the same rows.

Rows are the candles whose features are complete and whose first-touch label resolved UP or
DOWN; EXPIRED and PENDING rows are dropped (:func:`build_training_set`, the direction model's
rows). :func:`build_outcome_set` keeps the EXPIRED rows too: the touch factor of the
three-outcome forecast needs them. ``positions`` keeps each row's place in the candle
history, which is what a purge must count in (labels look ``horizon`` candles ahead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from signalcast.features.engineering import compute_features
from signalcast.features.labels import DOWN, EXPIRED, UP, first_touch_labels


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
    feats = compute_features(candles, timeframe)
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
    feats = compute_features(candles, timeframe)
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
