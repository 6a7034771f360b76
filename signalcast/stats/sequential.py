"""An always-valid test for a growing comparison, checked every day without inflating false
decisions.

A promotion round runs every day on the same, growing record of shared outcomes; testing it
at a fixed level each time would promote a no-better challenger far more often than the level
says (each look is another chance). The round therefore tests with an **e-value** whose
chance of *ever* reaching ``1 / alpha``, over every day of a record's life, is at most
``alpha`` (Ville's inequality): the record can be read daily, in full, and a challenger that
pulls ahead late is promoted when it does, not at the next of a few fixed looks.

The e-value is the one-sided normal-mixture martingale of the standardised sum of the loss
differences (Robbins 1970; the "normal mixture" boundary of Howard, Ramdas, McAuliffe and
Sekhon 2021): with ``s = z sqrt(n)`` the standardised sum after ``n`` outcomes and a mixing
variance ``r^2`` over effect sizes ``lambda >= 0``,

    E_n = 2 / sqrt(1 + r^2 n) * exp(r^2 s^2 / (2 (1 + r^2 n))) * Phi(r s / sqrt(1 + r^2 n)).

``r^2`` is chosen so that the boundary is tightest at ``n_planned`` outcomes
(``r^2 = (-2 log a + log(1 - 2 log a)) / n_planned``, Howard et al.); before and after it the
boundary is only slightly wider. Outcomes of a target with horizon ``H`` overlap, so ``z`` is
not the naive one: it is the Diebold-Mariano statistic with the Newey-West long-run variance
(:mod:`signalcast.stats.diebold_mariano`), and because that variance is estimated from few
independent stretches (about ``n / H``) the statistic is first mapped to its normal
equivalent through its fixed-b Student-t reference (``z = Phi^-1(F_t(t; df))``). Ville's bound
is exact for independent Gaussian increments of known variance; with dependent increments
and an estimated variance it holds asymptotically (time-uniform central limit theory,
Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas 2024), so its size is measured. Without that
mapping the asymptotic boundary rejected 9% of simulated overlapping-outcome nulls at a
nominal 5% over 120 days of daily checks (H = 72, 300 paths), with it 2.7% (365 days: 8.0%
and 3.3%; ``bench/bench_sequential.py``, ``tests/test_lifecycle_sequential.py``).

Information is counted in effective samples, not outcomes: the first decision waits for
``max(n_min, MIN_HORIZONS * H)`` outcomes (:func:`first_look`; at 300 outcomes of a 72-candle
target, about 4 independent stretches, the t reference has 2 degrees of freedom and the test
no power), and ``n_planned`` is twice that.

Replaced (bench/bench_lifecycle.py, same seeds): looks at fixed information points
``n_first * 2^(k-1)`` with ``alpha / 2^k`` each (a union bound). A record then waited for the
next doubling, so a challenger better after a regime change on day 10 was promoted at day 51
or day 99-108 (8/20 seeds within 120 days, median 2,065 outcomes after the change); testing
the whole record daily promoted 9/20, median 1,465 outcomes (day 74), with no false promotion
in either null (the looks: 1/20 with an equally good frozen twin; on the simulated nulls 6.0%
at a nominal 5%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_HORIZONS = 8  # the first decision needs at least 8 horizons of shared outcomes
PLANNED_FACTOR = 2  # the boundary is tightest at twice the first decision's outcomes
Z_CAP = 37.0  # a normal tail beyond it is below 1e-299 (JSON and floats stay finite)


@dataclass(frozen=True)
class Evidence:
    """The always-valid test of one record: it passes when ``e_value >= 1 / alpha``."""

    n: int  # outcomes in the record
    n_planned: int  # where the boundary is tightest
    z: float  # the statistic's normal equivalent (positive: the challenger is better)
    e_value: float  # E_n (module docstring); capped at exp(690), about 1e299, for JSON
    alpha: float  # the level; the threshold is 1 / alpha

    @property
    def passed(self) -> bool:
        return self.e_value >= 1.0 / self.alpha


def epoch_alpha(epoch: int, alpha: float) -> float:
    """The level of comparison epoch ``epoch`` (0: before any drift alarm):
    ``alpha * 6 / (pi^2 (epoch + 1)^2)``; summed over epochs, at most ``alpha``.

    >>> round(epoch_alpha(0, 0.05), 4), round(epoch_alpha(1, 0.05), 4)
    (0.0304, 0.0076)
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return alpha * 6.0 / (math.pi ** 2 * (epoch + 1) ** 2)


def first_look(n_min: int, horizon: int = 1) -> int:
    """Outcomes the first decision needs: ``max(n_min, MIN_HORIZONS * horizon)``.

    >>> first_look(300, 72), first_look(300, 24)
    (576, 300)
    """
    return max(int(n_min), MIN_HORIZONS * max(1, int(horizon)))


def mixture_log_e(statistic: float, df: float, n: int, n_planned: int, alpha: float) -> float:
    """``log E_n`` of the one-sided normal mixture (module docstring) for a t ``statistic``
    with ``df`` degrees of freedom after ``n`` outcomes; positive ``statistic``: evidence for
    the alternative.

    >>> round(mixture_log_e(0.0, 8.0, 1152, 1152, 0.05), 3)  # no evidence: E below 1
    -1.095
    >>> mixture_log_e(6.0, 30.0, 1152, 1152, 0.05) > math.log(1 / 0.05)
    True
    """
    return _log_e(_normal_equivalent(statistic, df), n, n_planned, alpha)


def _log_e(z: float, n: int, n_planned: int, alpha: float) -> float:
    """``log E_n`` for the normal-equivalent statistic ``z`` (:func:`mixture_log_e`)."""
    from scipy.special import log_ndtr

    if n < 1 or n_planned < 1:
        raise ValueError(f"need n >= 1 and n_planned >= 1, got {n} and {n_planned}")
    if math.isinf(z):
        return z
    s = z * math.sqrt(n)
    r2 = (-2.0 * math.log(alpha) + math.log(1.0 - 2.0 * math.log(alpha))) / n_planned
    v = 1.0 + r2 * n
    return float(math.log(2.0) - 0.5 * math.log(v) + r2 * s * s / (2.0 * v)
                 + log_ndtr(math.sqrt(r2) * s / math.sqrt(v)))


def evidence(statistic: float, df: float, n: int, n_first: int, alpha: float) -> Evidence:
    """The always-valid test of a record of ``n >= n_first`` outcomes (``n_first``:
    :func:`first_look`), tightest at ``PLANNED_FACTOR * n_first`` outcomes.

    >>> evidence(2.0, 8.0, 600, 576, 0.05).passed, evidence(6.0, 30.0, 2000, 576, 0.05).passed
    (False, True)
    """
    if n < n_first:
        raise ValueError(f"the record holds {n} outcomes, fewer than the {n_first} the first "
                         "decision needs")
    n_planned = PLANNED_FACTOR * n_first
    z = _normal_equivalent(statistic, df)
    return Evidence(n, n_planned, z, math.exp(min(_log_e(z, n, n_planned, alpha), 690.0)), alpha)


def _normal_equivalent(statistic: float, df: float) -> float:
    """The normal quantile with the tail probability of ``statistic`` under Student's t with
    ``df`` degrees of freedom (the fixed-b small-sample correction, module docstring)."""
    from scipy.stats import norm
    from scipy.stats import t as student_t

    if math.isnan(statistic):
        raise ValueError("the test statistic is NaN")
    if math.isinf(statistic):
        return statistic
    upper = statistic >= 0
    tail = float(student_t.sf(abs(statistic), df))
    z = float(norm.isf(tail)) if tail > 0 else Z_CAP
    return min(z, Z_CAP) if upper else -min(z, Z_CAP)
