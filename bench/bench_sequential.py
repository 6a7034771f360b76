"""Size and power of the always-valid promotion test on simulated overlapping-outcome losses,
read every day, side by side with the same mixture without the t mapping (the asymptotic
boundary) and with the replaced rule (looks at doublings at ``level / 2^k``).

Loss differences: a moving sum of ``H`` shocks (outcomes of neighbouring candles share their
future) plus independent noise, mean zero under the null; ``--shift`` moves the mean (the
challenger better). Every simulated day the whole record is tested (production:
signalcast.stats.sequential.evidence on signalcast.stats.diebold_mariano with Newey-West lags
3H), from ``first_look(300, H)`` outcomes on. Nothing is asserted.

    python bench/bench_sequential.py --paths 300 --days 120
    python bench/bench_sequential.py --paths 150 --days 365
    python bench/bench_sequential.py --paths 200 --days 120 --shift -0.06
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from bench_lifecycle import looks_rule  # the replaced rule, one definition for both benches

from signalcast.routing.promotion import LAGS_PER_HORIZON
from signalcast.stats.diebold_mariano import diebold_mariano
from signalcast.stats.sequential import evidence, first_look, mixture_log_e

RULES = ("always-valid (production)", "mixture without the t mapping", "looks at doublings")


def losses(rng: np.random.Generator, n: int, h: int, noise: float, shift: float) -> np.ndarray:
    shocks = np.convolve(rng.standard_normal(n + h), np.ones(h), "valid")[:n] / math.sqrt(h)
    return 0.3 * shocks + noise * rng.standard_normal(n) + shift


def first_decision(d: np.ndarray, h: int, alpha: float) -> list[int | None]:
    """The outcome count at which each rule first promotes (None: never)."""
    lags, n_first = LAGS_PER_HORIZON * h, first_look(300, h)
    found: list[int | None] = [None, None, None]
    for n in range(n_first, len(d) + 1, 24):
        if all(f is not None for f in found):
            break
        test = diebold_mariano(d[:n], np.zeros(n), lags=lags)
        if found[0] is None and evidence(-test.statistic, test.df, n, n_first, alpha).passed:
            found[0] = n
        if found[1] is None and mixture_log_e(-test.statistic, 1e12, n, 2 * n_first,
                                              alpha) >= math.log(1 / alpha):
            found[1] = n
        k, n_look, level = looks_rule(n, n_first, alpha)  # the look in force
        if found[2] is None and n - n_look < 24:  # a look is tested once, when it is reached
            look = diebold_mariano(d[:n_look], np.zeros(n_look), lags=lags)
            if look.p_value < level:
                found[2] = n
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--paths", type=int, default=300)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--horizon", type=int, default=72)
    parser.add_argument("--noise", type=float, default=0.3, help="independent noise's sd")
    parser.add_argument("--shift", type=float, default=0.0, help="mean loss difference")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    began = time.perf_counter()
    found = [first_decision(losses(rng, args.days * 24, args.horizon, args.noise, args.shift),
                            args.horizon, args.alpha) for _ in range(args.paths)]
    print(f"{args.paths} paths x {args.days} days of hourly outcomes, H {args.horizon}, noise "
          f"{args.noise}, shift {args.shift:+g}, level {args.alpha}; "
          f"{time.perf_counter() - began:.0f} s")
    for j, rule in enumerate(RULES):
        hits = [f[j] for f in found if f[j] is not None]
        print(f"  {rule}: promoted {len(hits) / args.paths:.3f}"
              + (f", median at {np.median(hits):.0f} outcomes" if hits else ""))


if __name__ == "__main__":
    main()
