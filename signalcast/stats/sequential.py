"""Repeated looks at a growing comparison without inflating false decisions.

A promotion round runs every day on the same, growing record of shared outcomes; testing it
at a fixed level each time would promote a no-better challenger far more often than the level
says (each look is another chance). Two rules keep the overall false-promotion rate at most
``alpha`` however often the round runs:

* **Looks at fixed information points**, not at clock times: look ``k`` uses the oldest
  ``n_first * 2^(k-1)`` shared outcomes. Checking twice between two points re-reads the same
  look and gets the same answer, so checking more often adds no look.
* **Alpha spending over looks**: look ``k`` is tested at ``alpha / 2^k``; the levels sum to
  ``alpha`` over infinitely many looks (a union bound), so no dependence between looks has to
  be modelled.

Information is counted in **effective samples**, not outcomes. Outcomes of a target with
horizon ``H`` overlap: about ``n / H`` of ``n`` shared outcomes are independent, and the
Diebold-Mariano test's reference has ``3n / (2 (3H + 1))`` degrees of freedom
(:mod:`signalcast.stats.diebold_mariano`). So:

* the first look waits for ``max(n_min, MIN_HORIZONS * H)`` outcomes: at 300 outcomes of a
  72-candle target (about 4 independent stretches, 2 degrees of freedom) the test has almost
  no power, and spending most of the level there (as ``6 / (pi^2 k^2)`` did: 61% at the first
  look) wastes it;
* each look doubles the information of the one before. With 25% steps (the previous grid) a
  72-candle target's look added one or two independent stretches, and the union bound paid
  for each: after two months the look in force was the 7th, tested at 0.0006, and a challenger
  that was clearly better after a regime change was never promoted (bench/bench_lifecycle.py).
  Doubling, a record's life holds few looks (after a year of hourly outcomes: the 5th), and
  each spends ``alpha / 2^k`` (0.025, 0.0125, 0.00625, ... at level 0.05).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

GROWTH = 2.0  # each look uses twice the outcomes of the one before
MIN_HORIZONS = 8  # the first look needs at least 8 horizons of shared outcomes


@dataclass(frozen=True)
class Look:
    index: int  # k, from 1
    n: int  # outcomes this look uses (the oldest ones)
    alpha: float  # the level spent at this look

    def to_dict(self) -> dict:
        return asdict(self)


def spent_alpha(k: int, alpha: float) -> float:
    """The level of look ``k`` (>= 1): ``alpha / 2^k``.

    >>> round(sum(spent_alpha(k, 0.05) for k in range(1, 60)), 6)
    0.05
    """
    if k < 1:
        raise ValueError(f"look index must be >= 1, got {k}")
    return alpha / 2.0 ** k


def epoch_alpha(epoch: int, alpha: float) -> float:
    """The level of comparison epoch ``epoch`` (0: before any drift alarm), to be spent over its
    looks: ``alpha * 6 / (pi^2 (epoch + 1)^2)``; summed over epochs, at most ``alpha``.

    >>> round(epoch_alpha(0, 0.05), 4), round(epoch_alpha(1, 0.05), 4)
    (0.0304, 0.0076)
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return alpha * 6.0 / (math.pi ** 2 * (epoch + 1) ** 2)


def first_look(n_min: int, horizon: int = 1) -> int:
    """Outcomes the first look needs: ``max(n_min, MIN_HORIZONS * horizon)``.

    >>> first_look(300, 72), first_look(300, 24)
    (576, 300)
    """
    return max(int(n_min), MIN_HORIZONS * max(1, int(horizon)))


def look_at(n_available: int, n_min: int, alpha: float, *, horizon: int = 1) -> Look | None:
    """The newest look ``n_available`` shared outcomes allow (None: fewer than the first look
    needs, :func:`first_look`).

    >>> [(look.index, look.n) for look in (look_at(n, 300, 0.05) for n in (300, 599, 600, 2000))]
    [(1, 300), (1, 300), (2, 600), (3, 1200)]
    >>> look_at(500, 300, 0.05, horizon=72) is None, look_at(1200, 300, 0.05, horizon=72).n
    (True, 1152)
    """
    n_first = first_look(n_min, horizon)
    if n_available < n_first:
        return None
    k = 1
    while look_points(n_first, k + 1) <= n_available:
        k += 1
    return Look(k, look_points(n_first, k), spent_alpha(k, alpha))


def look_points(n_first: int, k: int) -> int:
    """Outcomes used by look ``k``: ``ceil(n_first * GROWTH^(k-1))``."""
    return int(math.ceil(n_first * GROWTH ** (k - 1) - 1e-9))
