"""Leak-free walk-forward evaluation: folds with purge, embargo and a later calibration fold
(:mod:`.folds`), the walk-forward itself (:mod:`.walkforward`), scores (:mod:`.metrics`) and the
JSON/HTML/PNG comparison report (:mod:`.report`)."""

from signalcast.evaluation.folds import (
    Fold,
    FoldPlan,
    TestBlock,
    WalkForwardConfig,
    default_test_blocks,
    plan_folds,
)
from signalcast.evaluation.metrics import Scores, score
from signalcast.evaluation.walkforward import (
    FamilyResult,
    SeriesEvaluation,
    evaluate_series,
    walk_forward,
)

__all__ = [
    "FamilyResult",
    "Fold",
    "FoldPlan",
    "Scores",
    "SeriesEvaluation",
    "TestBlock",
    "WalkForwardConfig",
    "default_test_blocks",
    "evaluate_series",
    "plan_folds",
    "score",
    "walk_forward",
]
