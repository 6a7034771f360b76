"""Out-of-fold predictions as CSV: one row per (asset, target, family, test candle).

Columns ``time,asset,target,family,fold,p_up,p_down,outcome``: the candle's open time (ISO
UTC), the walk-forward fold, the forward-calibrated unconditional P(up first) and P(down
first) (:func:`~signalcast.evaluation.selection.evaluate_candidates`, scored folds only: the
first fold warms the calibration up) and the outcome by the project's first-touch rule
(``up``, ``down``, ``none``: neither level within the horizon). The family the selection picks
is written again under family ``champion``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from signalcast.evaluation.selection import OutcomeSet, Selection
from signalcast.features.labels import DOWN, UP

COLUMNS = ("time", "asset", "target", "family", "fold", "p_up", "p_down", "outcome")
CHAMPION = "champion"


def _outcome(label: int) -> str:
    return "up" if label == UP else "down" if label == DOWN else "none"


def selection_rows(data: OutcomeSet, selection: Selection, asset: str,
                   target: str) -> Iterator[dict]:
    """The CSV rows of one (asset, target) selection, every candidate then ``champion``."""
    rows = selection.rows[selection.scored]
    folds = selection.row_folds[selection.scored]
    times = pd.DatetimeIndex(data.times[rows])
    times = times.tz_localize("UTC") if times.tz is None else times.tz_convert("UTC")
    stamps = [t.isoformat().replace("+00:00", "Z") for t in times]
    outcomes = [_outcome(int(v)) for v in data.labels[rows]]
    reports = [(c.family, c) for c in selection.candidates]
    reports.append((CHAMPION, selection.candidate(selection.champion)))
    for family, c in reports:
        probs = c.probs3
        if probs is None:
            continue
        for i in np.arange(len(rows)):
            yield {"time": stamps[i], "asset": asset, "target": target, "family": family,
                   "fold": int(folds[i]), "p_up": f"{probs[i, 0]:.6f}",
                   "p_down": f"{probs[i, 1]:.6f}", "outcome": outcomes[i]}


def write_predictions_csv(path: Path, rows: Iterable[dict]) -> int:
    """Write ``rows`` under :data:`COLUMNS`; returns how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            n += 1
    return n
