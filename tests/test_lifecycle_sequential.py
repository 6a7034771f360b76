"""Repeated looks at a growing promotion record: fixed information points counted in
effective samples, alpha spent over looks, and the overall false-promotion rate of a daily
round on overlapping-outcome losses at most the level."""

from __future__ import annotations

import numpy as np
import pytest

from signalcast.config.routing import RoutePolicy
from signalcast.routing.promotion import LAGS_PER_HORIZON, effective_horizon
from signalcast.stats.diebold_mariano import diebold_mariano
from signalcast.stats.sequential import first_look, look_at, spent_alpha


def overlapping(rng: np.random.Generator, n: int, h: int) -> np.ndarray:
    """Mean-zero loss differences whose neighbours share ``h`` shocks (overlapping outcomes)."""
    return np.convolve(rng.normal(size=n + h), np.ones(h), "valid")[:n] / h


def test_looks_double_from_a_floor_of_eight_horizons_and_spend_at_most_the_level():
    assert first_look(300, 72) == 576 and first_look(300, 24) == 300
    points = sorted({look_at(n, 300, 0.05, horizon=72).n for n in range(576, 10_000)})
    assert points == [576, 1152, 2304, 4608, 9216]  # a year of hourly outcomes: 5 looks
    assert look_at(575, 300, 0.05, horizon=72) is None
    assert sum(spent_alpha(k, 0.05) for k in range(1, 200)) == pytest.approx(0.05)
    # re-reading the record between two points is the same look, however often it is read
    assert {look_at(n, 300, 0.05, horizon=72) for n in range(1152, 2304)} == {
        look_at(1152, 300, 0.05, horizon=72)}


def test_an_operator_lowering_the_minimum_gets_earlier_looks():
    default = RoutePolicy()
    assert effective_horizon(default, 72) == 72
    assert effective_horizon(default.model_copy(update={"promote_min_outcomes": 20}), 72) == 1


@pytest.mark.slow
def test_a_daily_round_on_overlapping_outcomes_keeps_its_level_and_finds_a_real_gain():
    rng = np.random.default_rng(3)
    h, days, alpha = 24, 100, 0.05
    lags = LAGS_PER_HORIZON * h

    # the round runs daily on the record resolved by then; a day between two information
    # points re-reads the newest look (same outcomes, same answer), so each look is tested once
    looks = {look_at(day * h, 300, alpha, horizon=h) for day in range(1, days + 1)} - {None}

    def ever_promoted(d: np.ndarray) -> bool:
        return any(diebold_mariano(d[:look.n], np.zeros(look.n), lags=lags).p_value < look.alpha
                   for look in sorted(looks, key=lambda look: look.n))

    assert [look.n for look in sorted(looks, key=lambda look: look.n)] == [300, 600, 1200, 2400]
    null = np.mean([ever_promoted(overlapping(rng, days * h, h)) for _ in range(300)])
    print(f"false promotions {null:.3f}")
    assert null <= 0.07  # level 0.05 over every daily look (sampling error of 300 runs)
    better = np.mean([ever_promoted(overlapping(rng, days * h, h) - 0.12)
                      for _ in range(100)])
    print(f"promotions of a better challenger {better:.2f}")
    assert better >= 0.8
