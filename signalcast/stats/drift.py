"""Drift of a forecaster's loss that respects overlapping outcomes.

Why not ADWIN on 0/1 errors: each outcome looks ``H`` candles ahead, so neighbouring errors
share most of their future and are strongly autocorrelated; a detector that assumes
independent errors sees "changes" in runs that are only overlap (40 alarms in 3 months on a
market whose law never changed).

Here the unit is a **block**: ``H`` consecutive candles (fixed grid, non-overlapping). A block's
loss is the mean three-outcome Brier of the forecasts made on its candles; blocks share at most
one horizon at their edge, so their losses are close to independent. A one-sided
**self-starting CUSUM** watches them: each completed block is standardised by the mean and
standard deviation of the blocks before it (since the champion started or the last alarm),
``z = (x - mean) / sd * sqrt(n / (n + 1))``, and ``S = max(0, S + z - k)``; an alarm when ``S >
h``. With ``k = 0.5`` the detector aims at a rise of half a block standard deviation; for
independent normal blocks ``h = 5`` gives an in-control average run length of about 940 blocks
(Siegmund's approximation; :func:`arl0`), i.e. one false alarm per ~2.5 years of daily blocks.
Block losses are skewed, so the figure measured on the synthetic market is reported in
``bench/bench_lifecycle.py``.

State is incremental (:class:`CusumState`, a few numbers): a new block updates it in O(1), no
history is rescanned.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

K_DEFAULT, H_DEFAULT = 0.5, 5.0
SD_FLOOR = 1e-6


@dataclass
class CusumState:
    n: int = 0  # blocks seen since the start or the last alarm
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations (Welford)
    s: float = 0.0  # the CUSUM statistic
    last_z: float | None = None

    @property
    def sd(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else float("nan")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> CusumState:
        return cls(**(data or {}))


def update(state: CusumState, loss: float, *, warmup: int, k: float = K_DEFAULT,
           h: float = H_DEFAULT) -> bool:
    """Add one block loss; True when it raises an alarm (the state then restarts, so the
    blocks after the change make the new reference).

    >>> state = CusumState()
    >>> [update(state, x, warmup=4) for x in [0.5, 0.52, 0.48, 0.5, 0.51, 0.49]]
    [False, False, False, False, False, False]
    >>> any(update(state, 0.7, warmup=4) for _ in range(3))
    True
    """
    alarm = False
    if state.n >= max(2, warmup):
        sd = max(state.sd, SD_FLOOR)
        z = (loss - state.mean) / sd * math.sqrt(state.n / (state.n + 1))
        state.last_z = z
        state.s = max(0.0, state.s + z - k)
        alarm = state.s > h
    if alarm:
        restarted = CusumState()
        state.n, state.mean, state.m2, state.s = (restarted.n, restarted.mean, restarted.m2,
                                                  restarted.s)
        return True
    state.n += 1
    delta = loss - state.mean
    state.mean += delta / state.n
    state.m2 += delta * (loss - state.mean)
    return False


def arl0(k: float = K_DEFAULT, h: float = H_DEFAULT) -> float:
    """Siegmund's approximation of the in-control average run length (blocks) of a one-sided
    CUSUM on independent standard normal data.

    >>> round(arl0(0.5, 5.0))
    938
    """
    b = h + 1.166
    return (math.exp(2 * k * b) - 2 * k * b - 1) / (2 * k * k)
