"""Repeated looks at a growing comparison without inflating false decisions.

A promotion round runs every day on the same, growing record of shared outcomes; testing it
at a fixed level each time would promote a no-better challenger far more often than the level
says (each look is another chance). Two rules keep the overall false-promotion rate at most
``alpha`` however often the round runs:

* **Looks at fixed information points**, not at clock times: look ``k`` uses the oldest
  ``ceil(n_min * GROWTH^(k-1))`` shared outcomes (each look has a quarter more evidence than
  the one before, so the number of looks grows with the logarithm of the record). Checking
  twice between two points re-reads the same look and gets the same answer, so checking more
  often adds no look.
* **Alpha spending over looks**: look ``k`` is tested at ``alpha * 6 / (pi^2 k^2)``; the levels
  sum to ``alpha`` over infinitely many looks (a union bound), so no dependence between looks
  has to be modelled. Early looks spend most (``0.61 alpha`` at the first), late ones little.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

GROWTH = 1.25  # each look uses a quarter more outcomes than the one before


@dataclass(frozen=True)
class Look:
    index: int  # k, from 1
    n: int  # outcomes this look uses (the oldest ones)
    alpha: float  # the level spent at this look

    def to_dict(self) -> dict:
        return asdict(self)


def spent_alpha(k: int, alpha: float) -> float:
    """The level of look ``k`` (>= 1): ``alpha * 6 / (pi^2 k^2)``.

    >>> round(sum(spent_alpha(k, 0.05) for k in range(1, 100_000)), 4)
    0.05
    """
    if k < 1:
        raise ValueError(f"look index must be >= 1, got {k}")
    return alpha * 6.0 / (math.pi ** 2 * k * k)


def look_at(n_available: int, n_min: int, alpha: float) -> Look | None:
    """The newest look ``n_available`` shared outcomes allow (None: fewer than ``n_min``).

    >>> [(look.index, look.n) for look in (look_at(n, 300, 0.05) for n in (300, 374, 375, 2000))]
    [(1, 300), (1, 300), (2, 375), (9, 1789)]
    """
    if n_available < n_min:
        return None
    k = 1
    while look_points(n_min, k + 1) <= n_available:
        k += 1
    return Look(k, look_points(n_min, k), spent_alpha(k, alpha))


def look_points(n_min: int, k: int) -> int:
    """Outcomes used by look ``k``: ``ceil(n_min * GROWTH^(k-1))``."""
    return int(math.ceil(n_min * GROWTH ** (k - 1) - 1e-9))
