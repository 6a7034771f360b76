"""Leak-free walk-forward evaluation of model families on one candle series and one target.

Per fold (see :mod:`.folds` for the purge, embargo and calibration arithmetic) a fresh model of
each family is fitted on the fit rows, a :class:`SigmoidCalibrator` on its raw probabilities over
the calibration rows, and the calibrated P(UP) of the test rows is kept: the out-of-fold (OOF)
predictions, the only ones scored. Every family is tested on the same rows, and an optional
reference probability (the synthetic market's oracle) is scored on those rows too.

>>> from signalcast.data import SyntheticMarket
>>> from signalcast.config import TargetConfig
>>> candles = SyntheticMarket(["BTC/USDT"], seed=1).generate(3000)["BTC/USDT"]
>>> ev = evaluate_series(candles, "1h", TargetConfig(pct=0.01, horizon=24),
...                      {"lightgbm": {"n_estimators": 10}}, WalkForwardConfig(folds=2))
>>> sorted(ev.oof.columns)[:4], ev.results[0].family
(['asset', 'family', 'fold', 'oracle_p_up'], 'lightgbm')
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from signalcast.config import TargetConfig
from signalcast.core.errors import DataError
from signalcast.evaluation.folds import FoldPlan, TestBlock, WalkForwardConfig, plan_folds
from signalcast.evaluation.metrics import Scores, score
from signalcast.features import feature_names
from signalcast.features.dataset import TrainingSet, build_training_set
from signalcast.models import registry
from signalcast.models.calibration import SigmoidCalibrator

Progress = Callable[[str], None]

OOF_COLUMNS = ["asset", "target", "family", "fold", "time", "position", "y", "p_up", "p_raw",
               "regime", "oracle_p_up"]


@dataclass
class FamilyResult:
    """One family's walk-forward: its scores over the OOF rows and what each fold learned."""

    family: str
    params: dict[str, Any]
    scores: Scores  # of the served, calibrated P(UP)
    raw_scores: Scores  # of the model's own P(UP), before calibration
    fold_auc: list[float | None]  # calibrated AUC within each fold (sigmoid keeps its order)
    calibrators: list[SigmoidCalibrator]  # one per fold, in fold order
    fit_seconds: float  # fit + calibrate + predict, all folds
    regime_names: list[str] | None = None  # set when the family exposes filtered regimes


@dataclass
class SeriesEvaluation:
    """Everything measured on one (asset, target): folds, per-family results, oracle, OOF rows."""

    asset: str
    target: TargetConfig
    plan: FoldPlan
    results: list[FamilyResult]
    oracle: Scores | None  # the reference probability scored on the same OOF rows
    oof: pd.DataFrame  # long format, one row per (family, OOF row): see OOF_COLUMNS
    close: pd.Series  # close prices over the tested span (for plots)
    fold_records: list[dict] = field(default_factory=list)

    def result(self, family: str) -> FamilyResult:
        for res in self.results:
            if res.family == family:
                return res
        raise KeyError(family)

    def predictions(self) -> pd.DataFrame:
        """OOF calibrated P(UP) pivoted to one column per family, indexed by candle time, plus
        the label ``y``: the input an ensemble's stacker is fitted on."""
        wide = self.oof.pivot(index="time", columns="family", values="p_up")
        labels = self.oof.drop_duplicates("time").set_index("time")["y"]
        return wide.join(labels)


def fit_fold(family: str, params: Mapping[str, Any], data: TrainingSet, fit: np.ndarray,
             calibration: np.ndarray):
    """A model of ``family`` fitted on the ``fit`` rows (as the training service fits it) and its
    calibrator, fitted on the model's raw probabilities over the later ``calibration`` rows."""
    model = registry.create(family, **params).fit_with_feature_names(
        data.X[fit], data.y[fit], feature_names())
    calibrator = SigmoidCalibrator.fit(model.predict_proba(data.X[calibration]),
                                       data.y[calibration])
    return model, calibrator


def filtered_regimes(model, X: np.ndarray) -> np.ndarray | None:
    """Index of the most probable filtered regime per row, when the family exposes
    ``regime_probabilities(X)`` (forward-only, so row t uses rows <= t); else None."""
    method = getattr(model, "regime_probabilities", None)
    if method is None:
        return None
    try:
        probs = np.asarray(method(X), dtype=float)
    except NotImplementedError:
        return None
    return probs.argmax(axis=1)


def _regime_names(model) -> list[str] | None:
    for attr in ("regime_names_", "regime_names"):
        names = getattr(model, attr, None)
        if names is not None and not callable(names):
            return [str(n) for n in names]
    return None


@dataclass
class FamilyRun:
    """One family's raw walk-forward output, aligned with ``plan.test_rows``."""

    p_up: np.ndarray  # calibrated
    p_raw: np.ndarray
    regime: np.ndarray  # most probable filtered regime, NaN when the family has none
    calibrators: list[SigmoidCalibrator]
    seconds: float
    regime_names: list[str] | None


def walk_forward(data: TrainingSet, plan: FoldPlan, family: str,
                 params: Mapping[str, Any]) -> FamilyRun:
    """Fit, calibrate and predict one family over every fold of ``plan``."""
    p_up, p_raw, regime, calibrators = [], [], [], []
    names = None
    started = time.perf_counter()
    for fold in plan.folds:
        model, calibrator = fit_fold(family, params, data, fold.fit, fold.calibration)
        raw = np.asarray(model.predict_proba(data.X[fold.test]), dtype=float)
        p_raw.append(raw)
        p_up.append(calibrator(raw))
        calibrators.append(calibrator)
        regimes = filtered_regimes(model, data.X[fold.test])
        regime.append(np.full(len(raw), np.nan) if regimes is None else regimes.astype(float))
        names = names or (_regime_names(model) if regimes is not None else None)
    return FamilyRun(np.concatenate(p_up), np.concatenate(p_raw), np.concatenate(regime),
                     calibrators, time.perf_counter() - started, names)


def evaluate_series(candles: pd.DataFrame, timeframe: str, target: TargetConfig,
                    families: Mapping[str, Mapping[str, Any]], config: WalkForwardConfig,
                    *, asset: str = "", oracle: pd.Series | None = None,
                    blocks: list[TestBlock] | None = None,
                    progress: Progress | None = None) -> SeriesEvaluation:
    """Walk-forward every family in ``families`` (name -> constructor params) on ``candles``.

    ``oracle``: optional reference P(UP) on the candle index (e.g.
    :meth:`SyntheticMarket.oracle_probability`), scored on the same OOF rows.
    ``blocks``: fixed test blocks in candle positions (default: from ``config.folds``).
    """
    say = progress or (lambda _msg: None)
    data = build_training_set(candles, timeframe, target)
    if len(data.y) == 0:
        raise DataError(f"{asset or 'series'} {target.key}: no row has a resolved label")
    plan = plan_folds(data.positions, data.y, target.horizon, config, blocks)
    if not plan.folds:
        raise DataError(f"{asset or 'series'} {target.key}: no usable walk-forward fold: "
                        + "; ".join(plan.skipped))
    rows = plan.test_rows
    times = candles.index[data.positions[rows]]
    fold_of_row = np.concatenate([np.full(len(f.test), f.index) for f in plan.folds])
    y = data.y[rows].astype(int)
    oracle_p = np.full(len(rows), np.nan)
    if oracle is not None:
        oracle_p = oracle.reindex(candles.index).to_numpy(dtype=float)[data.positions[rows]]

    frames, results = [], []
    for family, params in families.items():
        say(f"{asset} {target.key}: {family} over {len(plan.folds)} folds")
        run = walk_forward(data, plan, family, params)
        fold_auc = [score(y[fold_of_row == f.index], run.p_up[fold_of_row == f.index],
                          target.alert_threshold).auc for f in plan.folds]
        results.append(FamilyResult(family, dict(params),
                                    score(y, run.p_up, target.alert_threshold),
                                    score(y, run.p_raw, target.alert_threshold), fold_auc,
                                    run.calibrators, run.seconds, run.regime_names))
        frames.append(pd.DataFrame({
            "asset": asset, "target": target.key, "family": family, "fold": fold_of_row,
            "time": times, "position": data.positions[rows], "y": y, "p_up": run.p_up,
            "p_raw": run.p_raw, "regime": run.regime, "oracle_p_up": oracle_p,
        }, columns=OOF_COLUMNS))

    oracle_scores = None
    known = np.isfinite(oracle_p)
    if oracle is not None and known.any():
        oracle_scores = score(y[known], oracle_p[known], target.alert_threshold)
    first = data.positions[plan.folds[0].test[0]]
    return SeriesEvaluation(
        asset=asset, target=target, plan=plan, results=results, oracle=oracle_scores,
        oof=pd.concat(frames, ignore_index=True), close=candles["close"].iloc[first:],
        fold_records=[f.record(data.positions, candles.index[data.positions])
                      for f in plan.folds],
    )
