"""Skill of probability forecasts on overlapping first-touch labels, with overlap-aware tests.

Everything here is pure numpy/scipy and layout-agnostic: arrays in, floats out.

* :func:`causal_base_rate` - the reference forecast: for each row, the outcome frequency of the
  labels *resolved before it* (a label at candle ``j`` needs candles ``j+1..j+H``, so it is known
  at the close of candle ``j+H``), with a weak Beta prior. No hindsight constant.
* :func:`brier`, :func:`multi_brier`, :func:`brier_skill` - scores; skill = 1 - BS / BS_ref.
* :func:`skill_test` - circular block bootstrap (block >= horizon rows) of the skill against the
  reference: ``(skill, lower bound, p-value)``; :func:`dm_test` the Diebold-Mariano alternative
  with Newey-West variance (lags >= horizon).
* :func:`auc_null` - AUC with a circular label-shift null (keeps the labels' autocorrelation):
  ``(auc, null mean, null sd, p)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm, rankdata


def brier(y, p) -> float:
    y, p = np.asarray(y, float), np.asarray(p, float)
    return float(np.mean((p - y) ** 2))


def multi_brier(onehot, probs) -> float:
    """Multi-outcome Brier: mean over rows of sum over outcomes of (p_k - y_k)^2 (range 0..2)."""
    onehot, probs = np.asarray(onehot, float), np.asarray(probs, float)
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def onehot3(labels, up: int = 1, down: int = 0, none: int = -1) -> np.ndarray:
    """(n, 3) indicator of [UP, DOWN, NONE] from first-touch labels."""
    labels = np.asarray(labels)
    return np.column_stack([labels == up, labels == down, labels == none]).astype(float)


def causal_base_rate(y_hist, pos_hist, pos_eval, horizon: int, *, prior=0.5,
                     strength: float = 2.0) -> np.ndarray:
    """P(outcome) for each evaluated candle from the labels resolved before it.

    ``y_hist`` (n,) or (n, k) outcome indicators of labelled rows at candle positions
    ``pos_hist``; a row at ``j`` counts for an evaluation at candle ``t`` when ``j + horizon <=
    t``. ``prior`` (scalar or (k,)) with ``strength`` pseudo-rows fills the start.
    Returns (m,) or (m, k) for the ``pos_eval`` positions.
    """
    y_hist = np.asarray(y_hist, float)
    order = np.argsort(pos_hist, kind="stable")
    pos_sorted = np.asarray(pos_hist)[order]
    ys = y_hist[order]
    csum = np.concatenate([np.zeros((1,) + ys.shape[1:]), np.cumsum(ys, axis=0)])
    count = np.searchsorted(pos_sorted, np.asarray(pos_eval) - horizon, side="right")
    prior = np.asarray(prior, float)
    num = csum[count] + strength * prior
    den = (count + strength).reshape((-1,) + (1,) * (ys.ndim - 1))
    return num / den


def brier_skill(y, p, p_ref) -> float:
    """1 - BS(p) / BS(p_ref); for (n, k) inputs the multi-outcome Brier is used."""
    y = np.asarray(y, float)
    if y.ndim == 2:
        return 1.0 - multi_brier(y, p) / multi_brier(y, p_ref)
    return 1.0 - brier(y, p) / brier(y, p_ref)


def _row_losses(y, p) -> np.ndarray:
    y, p = np.asarray(y, float), np.asarray(p, float)
    sq = (p - y) ** 2
    return sq.sum(axis=1) if sq.ndim == 2 else sq


@dataclass(frozen=True)
class SkillTest:
    skill: float  # 1 - BS / BS_ref on all rows
    lower: float  # one-sided lower confidence bound (level 1 - alpha)
    p_value: float  # H0: skill <= 0
    n: int
    block: int
    method: str

    def to_dict(self) -> dict:
        return {k: (float(v) if isinstance(v, (float, np.floating)) else v)
                for k, v in asdict(self).items()}


def skill_test(y, p, p_ref, block: int, *, n_boot: int = 1000, alpha: float = 0.05,
               seed: int = 0) -> SkillTest:
    """Circular block bootstrap of the Brier skill of ``p`` against ``p_ref``.

    Rows must be in time order; ``block`` (rows) should be >= the label horizon in candles, so
    overlapping labels stay together. The p-value is the share of centred replicates at least as
    large as the observed skill (H0: skill <= 0)."""
    lm, lr = _row_losses(y, p), _row_losses(y, p_ref)
    n = len(lm)
    skill = 1.0 - lm.sum() / lr.sum()
    block = int(max(1, min(block, n)))
    rng = np.random.default_rng(seed)
    n_blocks = int(np.ceil(n / block))
    starts = rng.integers(0, n, size=(n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_boot, -1)[:, :n] % n
    reps = 1.0 - lm[idx].sum(axis=1) / lr[idx].sum(axis=1)
    lower = float(np.quantile(reps, alpha))
    p_value = float((1 + np.sum(reps - skill >= skill)) / (1 + n_boot))
    return SkillTest(float(skill), lower, p_value, n, block, "circular block bootstrap")


def dm_test(y, p, p_ref, lags: int, *, alpha: float = 0.05) -> SkillTest:
    """Diebold-Mariano on the Brier loss difference, Newey-West variance with ``lags`` (>= H);
    the skill bound is the delta-method bound of 1 - mean(lm)/mean(lr)."""
    lm, lr = _row_losses(y, p), _row_losses(y, p_ref)
    d = lr - lm
    n = len(d)
    dc = d - d.mean()
    lags = int(min(max(lags, 0), n - 1))
    var = dc @ dc / n
    for k in range(1, lags + 1):
        var += 2 * (1 - k / (lags + 1)) * (dc[k:] @ dc[:-k]) / n
    se = np.sqrt(max(var, 1e-300) / n)
    z = d.mean() / se
    skill = 1.0 - lm.sum() / lr.sum()
    lower = (d.mean() - norm.ppf(1 - alpha) * se) / lr.mean()
    return SkillTest(float(skill), float(lower), float(norm.sf(z)), n, lags, "diebold-mariano nw")


def _auc_from_ranks(ranks: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUC for label vector(s) ``y`` (n,) or (m, n) given the score ranks (ties averaged)."""
    n1 = y.sum(axis=-1)
    n0 = y.shape[-1] - n1
    return (y @ ranks - n1 * (n1 + 1) / 2) / (n1 * n0)


@dataclass(frozen=True)
class AucNull:
    auc: float
    null_mean: float
    null_sd: float
    p_value: float  # one-sided, H0: no better than a label-shifted forecast
    n_shifts: int

    def to_dict(self) -> dict:
        return {k: float(v) for k, v in asdict(self).items()}


def auc_null(y, p, horizon: int, *, n_shifts: int = 500, seed: int = 0) -> AucNull:
    """AUC of ``p`` and its null under circular label shifts by ``horizon .. n - horizon`` rows
    (rows in time order): the shifted labels keep their runs of overlapping outcomes."""
    y = np.asarray(y, float)
    ranks = rankdata(np.asarray(p, float))
    n = len(y)
    auc = float(_auc_from_ranks(ranks, y))
    lo, hi = min(horizon, n // 2), max(n - horizon, n // 2 + 1)
    shifts = np.random.default_rng(seed).integers(lo, hi, size=n_shifts)
    idx = (np.arange(n)[None, :] - shifts[:, None]) % n
    null = _auc_from_ranks(ranks, y[idx])
    p_value = float((1 + np.sum(null >= auc)) / (1 + n_shifts))
    return AucNull(auc, float(null.mean()), float(null.std(ddof=1)), p_value, n_shifts)
