"""Walk-forward fold plans: which rows fit, which calibrate and which are tested, per fold.

All arithmetic is on *candle positions* (a row's index in the candle history), because labels
look ``horizon`` candles ahead in candles, not in rows (unresolved rows are dropped).

For each test block ``[start, stop)`` (candle positions):

* **purge**: the training window holds only rows with ``position + horizon < start``: a row's
  label reads candles ``position + 1 .. position + horizon``, so none reads a test candle;
* **embargo**: rows in the ``embargo`` candles after an earlier test block never train (their
  features overlap that block's candles); the default embargo is ``horizon``;
* **calibration**: the training window is split like :func:`~signalcast.lifecycle.train.
  purged_split`: the model is fitted on the older rows, then a purge of ``horizon`` candles,
  then the newest ``calibration_fraction`` of the window calibrates. Calibration rows therefore
  come strictly after the fit rows and strictly before the test block, never inside it;
* **window**: ``expanding`` keeps every earlier row; ``rolling`` keeps the newest
  ``rolling_rows`` rows (default: the size of the first fold's window).

Default test blocks split the rows like scikit-learn's ``TimeSeriesSplit``: ``folds + 1`` equal
parts, the first one only ever trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from signalcast.core.errors import DataError


@dataclass(frozen=True)
class WalkForwardConfig:
    folds: int = 5
    window: Literal["expanding", "rolling"] = "expanding"
    rolling_rows: int | None = None
    embargo: int | None = None  # candles; None = the target's horizon
    calibration_fraction: float = 0.2
    min_fit_rows: int = 200
    min_calibration_rows: int = 50

    def __post_init__(self) -> None:
        if self.folds < 1:
            raise ValueError(f"folds must be >= 1, got {self.folds}")
        if self.window not in ("expanding", "rolling"):
            raise ValueError(f"window must be 'expanding' or 'rolling', got {self.window!r}")
        if self.rolling_rows is not None and self.rolling_rows < 2:
            raise ValueError(f"rolling_rows must be >= 2, got {self.rolling_rows}")
        if self.embargo is not None and self.embargo < 0:
            raise ValueError(f"embargo must be >= 0 candles, got {self.embargo}")
        if not 0 < self.calibration_fraction < 1:
            raise ValueError(f"calibration_fraction must be in (0, 1), "
                             f"got {self.calibration_fraction}")


@dataclass(frozen=True)
class TestBlock:
    """Candle positions ``[start, stop)`` of one test fold."""

    __test__ = False  # not a pytest test class, despite its name

    start: int
    stop: int


@dataclass(frozen=True)
class Fold:
    """Row indices (into the evaluated rows) of one fold's three parts, oldest first."""

    index: int
    block: TestBlock
    fit: np.ndarray
    calibration: np.ndarray
    test: np.ndarray

    def record(self, positions: np.ndarray, times) -> dict:
        """First/last candle position and time and the row count of each part (for JSON)."""
        out: dict = {"fold": self.index, "test_block": [self.block.start, self.block.stop]}
        for name in ("fit", "calibration", "test"):
            rows = getattr(self, name)
            out[name] = {
                "rows": len(rows),
                "first_position": int(positions[rows[0]]),
                "last_position": int(positions[rows[-1]]),
                "first_time": str(times[rows[0]]),
                "last_time": str(times[rows[-1]]),
            }
        return out


@dataclass(frozen=True)
class FoldPlan:
    horizon: int
    embargo: int
    folds: list[Fold]
    skipped: list[str] = field(default_factory=list)  # why a test block produced no fold

    @property
    def test_rows(self) -> np.ndarray:
        """Every tested row, in time order (the out-of-fold rows)."""
        return np.concatenate([f.test for f in self.folds]) if self.folds else np.empty(0, int)


def default_test_blocks(positions: np.ndarray, folds: int) -> list[TestBlock]:
    """``folds`` consecutive blocks over the newest ``folds / (folds + 1)`` of the rows."""
    n = len(positions)
    size = n // (folds + 1)
    if size < 1:
        raise DataError(f"{n} labelled rows cannot make {folds} walk-forward folds")
    starts = [n - (folds - k) * size for k in range(folds)]
    stops = [int(positions[s]) for s in starts[1:]] + [int(positions[-1]) + 1]
    return [TestBlock(int(positions[s]), stop) for s, stop in zip(starts, stops, strict=True)]


def plan_folds(positions: np.ndarray, labels: np.ndarray, horizon: int,
               config: WalkForwardConfig,
               blocks: list[TestBlock] | None = None) -> FoldPlan:
    """The folds for rows at candle ``positions`` (sorted) with 0/1 ``labels``.

    ``blocks`` fixes the test folds (e.g. to rerun on truncated history with the same folds);
    by default :func:`default_test_blocks`. A block whose training part is too small or holds
    one class only is skipped, with the reason in ``FoldPlan.skipped``: the decision depends on
    the data only, so every family is tested on the same rows.
    """
    positions, labels = np.asarray(positions), np.asarray(labels)
    if len(positions) != len(labels) or np.any(np.diff(positions) <= 0):
        raise ValueError("positions must be strictly increasing and match labels")
    blocks = default_test_blocks(positions, config.folds) if blocks is None else blocks
    for a, b in zip(blocks, blocks[1:], strict=False):
        if not (a.start < a.stop <= b.start < b.stop):
            raise ValueError(f"test blocks must be sorted and disjoint, got {a} then {b}")
    embargo = horizon if config.embargo is None else config.embargo
    embargoed = np.zeros(len(positions), dtype=bool)
    rolling_rows = config.rolling_rows
    folds: list[Fold] = []
    skipped: list[str] = []
    for k, block in enumerate(blocks):
        test = np.flatnonzero((positions >= block.start) & (positions < block.stop))
        window = np.flatnonzero((positions + horizon < block.start) & ~embargoed)
        if config.window == "rolling":
            rolling_rows = rolling_rows or max(len(window), 2)
            window = window[-rolling_rows:]
        embargoed |= (positions >= block.stop) & (positions < block.stop + embargo)
        fit, calibration = _split_window(positions, window, config.calibration_fraction, horizon)
        why = _unusable(test, fit, calibration, labels, config)
        if why:
            skipped.append(f"fold {k} (test candles {block.start}..{block.stop - 1}): {why}")
            continue
        folds.append(Fold(len(folds), block, fit, calibration, test))
    return FoldPlan(horizon, embargo, folds, skipped)


def _split_window(positions: np.ndarray, window: np.ndarray, fraction: float,
                  horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, calibration) rows of a training window: calibration is its newest share; fit rows
    end ``horizon`` candles before calibration starts."""
    if len(window) == 0:
        return window, window
    n_cal = max(1, int(round(len(window) * fraction)))
    cal_start = positions[window[-n_cal]]
    return (window[positions[window] + horizon < cal_start],
            window[positions[window] >= cal_start])


def _unusable(test: np.ndarray, fit: np.ndarray, calibration: np.ndarray, labels: np.ndarray,
              config: WalkForwardConfig) -> str | None:
    if len(test) == 0:
        return "no labelled rows to test"
    if len(fit) < config.min_fit_rows:
        return f"only {len(fit)} fit rows (need {config.min_fit_rows})"
    if len(calibration) < config.min_calibration_rows:
        return (f"only {len(calibration)} calibration rows "
                f"(need {config.min_calibration_rows})")
    if len(np.unique(labels[fit])) < 2:
        return "fit rows hold one class only"
    return None
