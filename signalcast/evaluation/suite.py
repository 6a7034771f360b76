"""Walk-forward every selected (asset, target, family) of a configuration.

Candles come from the configured database or from the seeded synthetic market (which also
provides the oracle). Families are whatever :func:`registry.families` holds, with the
configuration's parameters unless the caller passes others (e.g. :func:`quick_params`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from signalcast.config import Settings
from signalcast.data import SyntheticMarket
from signalcast.data.market_cache import shared_market
from signalcast.evaluation.folds import WalkForwardConfig
from signalcast.evaluation.walkforward import Progress, SeriesEvaluation, evaluate_series
from signalcast.models import registry

ParamsFor = Callable[[str], dict[str, Any]]

# Constructor arguments that set a family's size or effort, and the small value used by
# quick_params: few trees, few EM iterations, one restart, one thread.
_QUICK = {
    "n_estimators": 20, "num_boost_round": 20, "n_trees": 5, "n_models": 5, "n_iter": 20,
    "max_iter": 50, "n_restarts": 1, "restarts": 1, "n_init": 1, "n_neighbors": 8,
    "neighbors": 8, "max_depth": 4, "num_threads": 1, "n_jobs": 1, "nthread": 1, "folds": 2,
}


def quick_params(family: str) -> dict[str, Any]:
    """Small, fast hyperparameters for ``family``: every size/effort argument its constructor
    accepts (n_estimators, n_iter, restarts, threads, ...) set low, and, for a composite family
    whose constructor takes another family's parameters under that family's name (e.g.
    ``hmm_lightgbm(hmm=..., lightgbm=...)``) or ensemble ``members`` (``{family, params}``
    specs), those parts' quick parameters. For tests and smoke runs, not for figures."""
    accepted = inspect.signature(registry.family_class(family).__init__).parameters
    params: dict[str, Any] = {name: value for name, value in _QUICK.items() if name in accepted}
    for name in accepted:  # a composite family takes its parts' parameters by family name
        if name != family and name in registry.families():
            params[name] = quick_params(name)
    if "members" in accepted:  # an ensemble: its default members, each with quick parameters
        members = registry.create(family).get_params()["members"]
        params["members"] = [{"family": m["family"],
                              "params": {**m["params"], **quick_params(m["family"])}}
                             for m in members]
    return params


def selected_families(names: Sequence[str] | None) -> list[str]:
    """``names`` validated against the registry (unknown names raise), else every family."""
    if not names:
        return sorted(registry.families())
    for name in names:
        registry.family_class(name)
    return list(dict.fromkeys(names))


def synthetic_candles(settings: Settings, assets: Sequence[str],
                      periods: int) -> tuple[dict[str, pd.DataFrame], dict[str, SyntheticMarket]]:
    """The first ``periods`` candles of each asset from the configured synthetic market (seed,
    start and timeframe from the config), and the market of each asset (for its oracle)."""
    candles, markets = {}, {}
    symbols = [a.symbol for a in settings.assets]
    for symbol in assets:
        market = shared_market(symbols, settings.data.seed, settings.asset(symbol).timeframe,
                               settings.data.start)
        candles[symbol] = market.generate(periods)[symbol]
        markets[symbol] = market
    return candles, markets


def evaluate_settings(settings: Settings, candles: dict[str, pd.DataFrame], *,
                      targets: Sequence[str] | None = None,
                      families: Sequence[str] | None = None,
                      config: WalkForwardConfig = WalkForwardConfig(),
                      markets: dict[str, SyntheticMarket] | None = None,
                      params_for: ParamsFor | None = None,
                      progress: Progress | None = None) -> list[SeriesEvaluation]:
    """Walk-forward each asset of ``candles`` x each target x each family.

    ``markets`` (asset -> synthetic market) adds the oracle; ``params_for`` maps a family to
    its constructor parameters (default: the configuration's ``models.params``).
    """
    params_for = params_for or settings.model_params
    names = selected_families(families)
    target_cfgs = ([settings.target(k) for k in targets] if targets
                   else list(settings.targets))
    evaluations = []
    for symbol, frame in candles.items():
        cfg = settings.asset(symbol)
        for target in target_cfgs:
            oracle = None
            if markets and symbol in markets:
                oracle = markets[symbol].oracle_probability(cfg.symbol, target.pct,
                                                            target.horizon, len(frame))
            evaluations.append(evaluate_series(
                frame, cfg.timeframe, target,
                {n: registry.with_horizon(n, params_for(n), target.horizon) for n in names}, config,
                asset=cfg.symbol, oracle=oracle, progress=progress))
    return evaluations
