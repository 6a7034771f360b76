"""Out-of-fold member predictions for ensembles, built walk-forward with a purge.

scikit-learn's ``StackingClassifier`` refuses time-series splits (docs/ml-notes.md), so the members'
out-of-fold (OOF) probabilities come from the evaluation package's walk-forward instead
(:func:`signalcast.evaluation.folds.plan_folds` and :func:`signalcast.evaluation.walkforward.
walk_forward`): for every test block, each member is fitted on rows that end ``horizon`` rows
before the block, and the rows after a block are embargoed.

Inside a model's ``fit`` only rows are known, not candle positions, so rows are numbered
``0..n-1`` and the purge counts rows. That is conservative: rows are labelled candles in time
order with unlabelled candles dropped, so ``j - i > horizon`` rows apart means at least as many
candles apart, and no training label reads a candle of the test block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from signalcast.core.errors import DataError

# Walk-forward calibration rows are not used here (ensembles take the members' raw OOF
# probabilities), so keep that split small.
_CALIBRATION_FRACTION = 0.05


@dataclass(frozen=True)
class MemberOOF:
    """Each member's raw P(UP) on the out-of-fold rows, and the plan that produced them."""

    rows: np.ndarray  # indices into the fitted rows, in time order
    probs: np.ndarray  # (len(rows), n_members), raw (uncalibrated) member probabilities
    y: np.ndarray  # labels of ``rows``
    plan: Any  # signalcast.evaluation.folds.FoldPlan


def member_oof(X: np.ndarray, y: np.ndarray, members: Sequence[Mapping[str, Any]], *,
               seed: int, horizon: int, folds: int, min_fit_rows: int) -> MemberOOF | None:
    """Walk-forward OOF probabilities of every member on ``X``, ``y`` (rows in time order), or
    None when the rows are too few for a single usable fold (the caller falls back)."""
    from signalcast.evaluation.folds import WalkForwardConfig, plan_folds
    from signalcast.evaluation.walkforward import walk_forward
    from signalcast.features.dataset import TrainingSet

    positions = np.arange(len(y))
    config = WalkForwardConfig(folds=folds, min_fit_rows=min_fit_rows, min_calibration_rows=1,
                               calibration_fraction=_CALIBRATION_FRACTION)
    try:
        plan = plan_folds(positions, y, horizon, config)
    except DataError:
        return None
    if not plan.folds:
        return None
    data = TrainingSet(X, y, positions, positions)
    probs = [walk_forward(data, plan, m["family"], {"seed": seed, **m["params"]}).p_raw
             for m in members]
    rows = plan.test_rows
    return MemberOOF(rows, np.column_stack(probs), y[rows], plan)
