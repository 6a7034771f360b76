"""The ``models`` section (which family serves, chosen by evidence or fixed; the candidates;
per-family parameters; the skill gate's override) and the ``training`` section (how much history
a model is fitted on and how it is evaluated walk-forward)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from signalcast.config.base import Section

AUTO = "auto"


class ModelsConfig(Section):
    """``champion: auto`` (default): each training of an (asset, target) evaluates every family
    of ``candidates`` walk-forward on the same purged folds and the one whose Brier skill
    against the causal base rate is surest serves (skill gate open first, then the skill's
    lower bound); a family name fixes it instead. ``candidates``
    empty: the built-in single families. ``alert_without_skill``: target keys (or ``"*"``) whose
    signal alerts go out even while their champion's skill is not shown (an admin override;
    predictions are recorded either way)."""

    champion: str = AUTO
    candidates: list[str] = Field(default_factory=list)
    keep_versions: int = Field(default=5, ge=1)
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    alert_without_skill: list[str] = Field(default_factory=list)


class TrainingConfig(Section):
    """``history_candles`` per training; at least ``min_rows`` resolved rows. The model is
    evaluated on ``folds`` walk-forward folds (purge and embargo = the target's horizon; the
    first fold warms up the forward calibration and is not scored), its calibration is fitted on
    their pooled out-of-fold predictions, and the skill test uses ``bootstrap`` block-bootstrap
    replicates (blocks of one horizon). ``calibration_fraction`` is the share of each fold's
    training window its calibration rows take.

    With ``drift_window`` (off by default) a retrain queued by a drift alarm reads only the
    recent candles: from one block (``horizon`` candles) before the change point the alarm's
    CUSUM implies (the start of its last rise) to now, plus the features' lookback; never
    fewer than
    ``drift_min_rows`` usable rows (unset: ``min_rows``), doubled while its rows are too few
    for the walk-forward evidence, never more than ``history_candles``. The window is in the
    version's ``train_start`` and ``metrics.window`` and in its ``drift_retrain`` model event.
    The scheduled retrain always reads ``history_candles``. Off by default because the
    lifecycle bench measured no gain: after a planted change the full-window retrain already
    beat the old champion in 17 of 20 seeds, promotions were the same with and without the
    window (1/20 at a year's window, 3/20 at 60 days), and recent-window challengers were worse
    than full-window ones in 13 of 20 seeds."""

    history_candles: int = Field(default=8760, ge=100)
    min_rows: int = Field(default=500, ge=50)
    drift_window: bool = False
    drift_min_rows: int | None = Field(default=None, ge=50)
    calibration_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    folds: int = Field(default=6, ge=3, le=20)
    bootstrap: int = Field(default=1000, ge=100, le=20000)
