"""The always-valid promotion test: no decision before eight horizons of shared outcomes, an
e-value that reads the whole record every day, and the overall false-promotion rate of a
daily round on overlapping-outcome losses at most the level."""

from __future__ import annotations

import math

import numpy as np
import pytest

from signalcast.config.routing import RoutePolicy
from signalcast.routing.promotion import LAGS_PER_HORIZON, effective_horizon
from signalcast.stats.diebold_mariano import diebold_mariano
from signalcast.stats.sequential import (
    PLANNED_FACTOR,
    epoch_alpha,
    evidence,
    first_look,
    mixture_log_e,
)


def overlapping(rng: np.random.Generator, n: int, h: int) -> np.ndarray:
    """Mean-zero loss differences whose neighbours share ``h`` shocks (overlapping outcomes)."""
    return np.convolve(rng.normal(size=n + h), np.ones(h), "valid")[:n] / h


def test_the_first_decision_waits_for_eight_horizons_and_epochs_share_the_level():
    assert first_look(300, 72) == 576 and first_look(300, 24) == 300
    with pytest.raises(ValueError, match="fewer than the 576"):
        evidence(3.0, 4.0, 575, 576, 0.05)
    assert evidence(3.0, 4.0, 576, 576, 0.05).n_planned == PLANNED_FACTOR * 576
    assert sum(epoch_alpha(j, 0.05) for j in range(10_000)) == pytest.approx(0.05, abs=1e-5)


def test_the_e_value_grows_with_evidence_and_shrinks_without_it():
    n, planned = 1152, 1152
    values = [mixture_log_e(t, 8.0, n, planned, 0.05) for t in (-2.0, 0.0, 2.0, 4.0, 8.0)]
    assert values == sorted(values) and values[1] < 0  # no evidence: E below 1
    # the same t statistic is worth less with fewer degrees of freedom (a noisier variance)
    assert mixture_log_e(4.0, 4.0, n, planned, 0.05) < mixture_log_e(4.0, 40.0, n, planned, 0.05)
    # a huge statistic stays finite in JSON, an infinite one decides
    assert math.isfinite(evidence(1e9, 8.0, n, 576, 0.05).e_value)
    assert evidence(math.inf, 8.0, n, 576, 0.05).passed
    with pytest.raises(ValueError, match="NaN"):
        evidence(math.nan, 8.0, n, 576, 0.05)


def test_an_operator_lowering_the_minimum_gets_earlier_decisions():
    default = RoutePolicy()
    assert effective_horizon(default, 72) == 72
    assert effective_horizon(default.model_copy(update={"promote_min_outcomes": 20}), 72) == 1


@pytest.mark.slow
def test_a_daily_round_on_overlapping_outcomes_keeps_its_level_and_finds_a_real_gain():
    rng = np.random.default_rng(3)
    h, days, alpha = 24, 100, 0.05
    lags = LAGS_PER_HORIZON * h
    n_first = first_look(300, h)

    def ever_promoted(d: np.ndarray) -> bool:
        """The daily round: every day the whole record resolved by then is tested."""
        for n in range(n_first, len(d) + 1, h):
            test = diebold_mariano(d[:n], np.zeros(n), lags=lags)
            if evidence(-test.statistic, test.df, n, n_first, alpha).passed:
                return True
        return False

    null = np.mean([ever_promoted(overlapping(rng, days * h, h)) for _ in range(150)])
    print(f"false promotions {null:.3f}")
    assert null <= 0.07  # level 0.05 over 76 daily looks (sampling error of 150 runs)
    better = np.mean([ever_promoted(overlapping(rng, days * h, h) - 0.12)
                      for _ in range(40)])
    print(f"promotions of a better challenger {better:.2f}")
    assert better >= 0.8
