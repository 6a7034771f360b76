"""Diebold-Mariano test of a loss difference under overlapping outcomes.

Outcomes of neighbouring candles overlap (each looks ``horizon`` candles ahead), so the variance
of the mean loss difference is the Newey-West long-run variance with Bartlett weights. Small
samples: with a 72-candle horizon, 300 outcomes hold only a handful of independent stretches,
and the textbook test (``lags = horizon``, normal or t(n-1) reference) rejected a true null
10-17% of the time at a nominal 5% (simulated overlapping-outcome losses). Two fixed-b
corrections bring that to 6-8%: the Bartlett estimate is divided by ``1 - b`` (its bias with
``b = (lags + 1) / n``) and the statistic is referred to Student's t with the estimate's
equivalent degrees of freedom ``3n / (2 (lags + 1))`` (Sun, Phillips and Jin 2008).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DieboldMariano:
    n: int
    mean_diff: float  # mean of loss(challenger) - loss(champion); negative: challenger better
    se: float  # Newey-West standard error of the mean difference
    statistic: float  # (mean_diff + margin) / se
    p_value: float  # one-sided: small when the challenger is better by more than the margin
    lags: int
    margin: float
    df: float  # degrees of freedom of the t reference


def newey_west_variance(d: np.ndarray, lags: int) -> float:
    """Long-run variance of the series ``d`` (Bartlett weights ``1 - k / (lags + 1)``), the
    variance of ``sqrt(n) * mean(d)`` under autocorrelation up to ``lags``."""
    d = np.asarray(d, dtype=np.float64) - np.mean(d)
    n = len(d)
    variance = float(d @ d) / n
    for k in range(1, min(lags, n - 1) + 1):
        variance += 2.0 * (1.0 - k / (lags + 1.0)) * float(d[k:] @ d[:-k]) / n
    return max(variance, 0.0)


def diebold_mariano(loss_challenger: np.ndarray, loss_champion: np.ndarray, lags: int,
                    margin: float = 0.0) -> DieboldMariano:
    """One-sided Diebold-Mariano test that the challenger's loss is lower by more than
    ``margin``; the statistic is ``(mean(d) + margin) / se``,
    ``d = loss_challenger - loss_champion``.

    >>> rng = np.random.default_rng(0)
    >>> champion, challenger = rng.random(500) * 0.3, rng.random(500) * 0.2
    >>> diebold_mariano(challenger, champion, lags=5).p_value < 0.01
    True
    """
    from scipy.stats import t as student_t

    d = np.asarray(loss_challenger, dtype=np.float64) - np.asarray(loss_champion, np.float64)
    n = len(d)
    if n < 2:
        raise ValueError(f"need at least 2 paired losses, got {n}")
    mean = float(d.mean())
    b = min((lags + 1) / n, 0.5)  # fixed-b bias of the Bartlett estimate (module docstring)
    se = float(np.sqrt(newey_west_variance(d, lags) / (1.0 - b) / n))
    df = max(1.0, 3.0 * n / (2.0 * (lags + 1)))
    if se == 0.0:
        statistic = -np.inf if mean + margin < 0 else (np.inf if mean + margin > 0 else 0.0)
    else:
        statistic = (mean + margin) / se
    p_value = float(student_t.cdf(statistic, df=df)) if np.isfinite(statistic) else \
        (0.0 if statistic < 0 else 1.0)
    return DieboldMariano(n, mean, se, float(statistic), p_value, lags, margin, df)
