"""Ensembles as model families: a weighted average (fixed or optimised weights, AlphaPulse's
batch/online blend) and a stacked logistic meta-learner, both fitted on walk-forward
out-of-fold member predictions, both flagging rows where members disagree on the direction.

Registered as ``weighted_ensemble`` and ``stacking_ensemble``; import the classes from
:mod:`.weighted` and :mod:`.stacking` (this package imports no model library by itself).
"""

from signalcast.ensemble.base import conflicts, normalise_members

__all__ = ["conflicts", "normalise_members"]
