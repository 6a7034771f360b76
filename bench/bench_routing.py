"""Routing figures: the hot path's latency, and promotion after a planted regime change.

1. **Latency**: ``predict_asset`` for one asset at one closed candle, all targets, the champion
   (LightGBM) plus two shadows (XGBoost, River) each, with warm model caches, on SQLite:
   read candles, features once, 9 model calls, predictions and alerts written and committed.
   Median and p95 over ``--candles`` consecutive candles, next to the champion alone.
2. **Promotion after a regime change**: a synthetic market whose regimes keep their volatility
   but swap the sign of their drift at a known candle (two seeded ``SyntheticMarket`` histories
   spliced, the second rescaled to continue the first's price; stronger drifts and shorter
   regimes than the default market so the planted signal is clear: the oracle's AUC is
   printed beside each served AUC). The
   champion was trained before the change; a challenger of another family is trained on the
   candles after it and predicts in shadow. The tick loop is replayed on a simulated clock
   (predict, resolve outcomes, and the promotion job every ``--check-every`` candles,
   ``promote_mode: auto``); printed: how many
   shared resolved outcomes the test needed to promote the challenger, and the AUC of the
   *served* predictions before the change, after it until the promotion, and after the
   promotion.

Run from the repository root::

    python bench/bench_routing.py                 # both parts
    python bench/bench_routing.py --part latency --candles 300
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from signalcast.config import load_settings  # noqa: E402
from signalcast.data.synthetic import DEFAULT_SPEC, SyntheticMarket  # noqa: E402
from signalcast.db.candles import store_candles  # noqa: E402
from signalcast.db.engine import init_db, session_scope  # noqa: E402
from signalcast.lifecycle.train import train_model  # noqa: E402
from signalcast.pipeline.predict import predict_asset  # noqa: E402
from signalcast.pipeline.resolve import resolve_outcomes  # noqa: E402

ASSET = "BTC/USDT"


def settings_for(tmp: Path, name: str, config: dict):
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_settings(path, database_url=f"sqlite:///{tmp}/{name}.db", broker_url=None,
                         telegram_token=None)


def store(engine, candles: pd.DataFrame) -> None:
    now = candles.index[-1] + timedelta(hours=1)
    with session_scope(engine) as session:
        store_candles(session, ASSET, "1h", candles, now)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# -- 1. latency ---------------------------------------------------------------------------------


def latency(tmp: Path, n_candles: int) -> None:
    targets = [{"pct": 0.01, "horizon": 72}, {"pct": 0.02, "horizon": 72},
               {"pct": 0.05, "horizon": 72}]
    config = {"assets": [{"symbol": ASSET}], "targets": targets,
              "data": {"source": "stored"}, "alerts": {"console": True},
              "training": {"history_candles": 4000, "min_rows": 500},
              "models": {"champion": "lightgbm"},
              "routing": {"default": {"shadows": ["xgboost", "river"]}}}
    settings = settings_for(tmp, "latency", config)
    engine = init_db(settings.env.database_url)
    history = 4300 + n_candles
    candles = SyntheticMarket([ASSET], seed=7).generate(history)[ASSET]
    store(engine, candles)
    train_at = candles.index[4300 - 1] + timedelta(hours=1)
    started = time.perf_counter()
    for target in settings.targets:
        for family in ("lightgbm", "xgboost", "river"):
            train_model(engine, settings, ASSET, target.key, family, now=train_at)
    print(f"trained 9 models in {time.perf_counter() - started:.0f} s")
    no_shadows = settings_for(tmp, "latency", {**config, "routing": {}})
    times = {"champion + 2 shadows": [], "champion only": []}
    for i, candle in enumerate(candles.index[4300 - 1:]):
        which = "champion + 2 shadows" if i % 2 else "champion only"
        chosen = settings if which == "champion + 2 shadows" else no_shadows
        t0 = time.perf_counter()
        with session_scope(engine) as session:
            result = predict_asset(session, chosen, ASSET, candle.to_pydatetime())
        elapsed = time.perf_counter() - t0
        if i >= 2:  # the first two load and cache the models
            times[which].append(elapsed * 1000)
        assert not result.skipped, result.skipped
    print(f"\n(1) hot path latency per asset, {len(settings.targets)} targets, SQLite, warm "
          "model caches (ms):")
    for which, values in times.items():
        print(f"    {which:<22} median {statistics.median(values):6.1f}   "
              f"p95 {percentile(values, 95):6.1f}   (n={len(values)})")


# -- 2. regime change and promotion ---------------------------------------------------------------


def scaled_spec(factor: float, persistence: float):
    """The default market with every regime's drift multiplied by ``factor`` and the same
    ``persistence`` for every regime (volatility unchanged); a negative factor flips the
    direction of every regime. At (3, 0.98) the oracle's AUC on a 1%/24h target is about 0.73
    (0.59 for the default market) and a month holds about 15 regime spells, so a model trained
    on a month after the change has something to learn and the figures settle in weeks."""
    regimes = tuple(dataclasses.replace(r, drift=r.drift * factor, persistence=persistence)
                    for r in DEFAULT_SPEC.regimes)
    return dataclasses.replace(DEFAULT_SPEC, regimes=regimes)


def spliced_market(n_before: int, n_after: int, target, drift_scale: float,
                   persistence: float) -> tuple[pd.DataFrame, pd.Series]:
    """Candles of two seeded markets spliced at ``n_before`` (drifts flipped after it), and the
    oracle's P(UP | touched) of ``target`` for each candle (each market's own oracle)."""
    first = SyntheticMarket([ASSET], seed=7, spec=scaled_spec(drift_scale, persistence))
    second = SyntheticMarket([ASSET], seed=8, spec=scaled_spec(-drift_scale, persistence))
    before, after = first.generate(n_before)[ASSET], second.generate(n_after)[ASSET].copy()
    scale = before["close"].iloc[-1] / after["open"].iloc[0]
    after[["open", "high", "low", "close"]] *= scale
    index = before.index[-1] + pd.to_timedelta(np.arange(1, n_after + 1), unit="h")
    after.index = pd.DatetimeIndex(index, name="time")
    oracle = np.r_[
        first.oracle_probability(ASSET, target.pct, target.horizon, n_before).to_numpy(),
        second.oracle_probability(ASSET, target.pct, target.horizon, n_after).to_numpy()]
    candles = pd.concat([before, after])
    return candles, pd.Series(oracle, index=candles.index)


def served_auc(engine, since, until, oracle: pd.Series) -> tuple[float | None, float | None,
                                                                   int]:
    """AUC of the served predictions of candles in [since, until) with an UP/DOWN outcome, and
    the oracle's AUC on the same candles (the best any model could do)."""
    from sklearn.metrics import roc_auc_score
    from sqlmodel import select

    from signalcast.db.tables import Outcome, Prediction

    with session_scope(engine, readonly=True) as session:
        rows = session.exec(select(Prediction.candle_time, Prediction.prob_up, Outcome.label)
                            .join(Outcome, (Outcome.asset == Prediction.asset)
                                  & (Outcome.target == Prediction.target)
                                  & (Outcome.candle_time == Prediction.candle_time))
                            .where(Prediction.served, Prediction.candle_time >= since,
                                   Prediction.candle_time < until,
                                   Outcome.label.in_((0, 1)))).all()
    y = np.array([r[2] for r in rows])
    if len(set(y)) < 2:
        return None, None, len(rows)
    best = oracle.reindex(pd.DatetimeIndex([r[0] for r in rows])).to_numpy()
    return (float(roc_auc_score(y, [r[1] for r in rows])), float(roc_auc_score(y, best)),
            len(rows))


def regime_change(tmp: Path, args) -> None:
    from signalcast.lifecycle.promote import evaluate_promotions

    n_before, post_train, after_train = 4000, args.post_train_days * 24, args.after_days * 24
    config = {"assets": [{"symbol": ASSET}], "targets": [{"pct": 0.01, "horizon": 24}],
              "data": {"source": "stored"}, "alerts": {"console": False},
              "training": {"history_candles": 3500, "min_rows": 300},
              "routing": {"default": {"shadows": [args.challenger], "promote_mode": "auto",
                                      "promote_min_outcomes": args.min_outcomes,
                                      "promote_significance": 0.05}}}
    settings = settings_for(tmp, "regime", config)
    engine = init_db(settings.env.database_url)
    candles, oracle = spliced_market(n_before, post_train + after_train + 48,
                                     settings.targets[0], args.drift_scale, args.persistence)
    change = candles.index[n_before]
    store(engine, candles)
    key = settings.targets[0].key
    start = change - timedelta(days=args.pre_days)
    champion = train_model(engine, settings, ASSET, key, "lightgbm", now=start)
    recent = settings_for(tmp, "regime", {**config, "training": {
        "history_candles": post_train, "min_rows": 300}})
    challenger_at = change + timedelta(hours=post_train)
    print(f"\n(2) regime change at {change:%Y-%m-%d %H:%M}: drifts (x{args.drift_scale:g}, "
          f"persistence {args.persistence:g}) flip sign; champion "
          f"lightgbm v{champion.version} trained before it, challenger {args.challenger} "
          f"trained on the {post_train} candles after it (at {challenger_at:%Y-%m-%d})")
    promoted_at, promoted_n = None, None
    ticks = candles.index[(candles.index >= start)
                          & (candles.index < challenger_at + timedelta(hours=after_train))]
    started = time.perf_counter()
    for i, candle in enumerate(ticks):
        now = candle.to_pydatetime() + timedelta(hours=1)
        if candle == challenger_at:
            version = train_model(engine, recent, ASSET, key, args.challenger, now=now)
            print(f"    trained {args.challenger} v{version.version}: calibration AUC "
                  f"{version.metrics['auc']:.3f}")
        with session_scope(engine) as session:
            predict_asset(session, settings, ASSET, candle.to_pydatetime())
            resolve_outcomes(session, settings, ASSET, now)
        if promoted_at is None and candle >= challenger_at and i % args.check_every == 0:
            for item in evaluate_promotions(engine, settings, now):
                if item.decision == "promoted":
                    promoted_at, promoted_n = now, item.n_shared
                    s = item.stats
                    print(f"    promoted at {now:%Y-%m-%d %H:%M} after {item.n_shared} shared "
                          f"resolved outcomes: Brier {s['brier_champion']:.4f} -> "
                          f"{s['brier_challenger']:.4f}, p={s['p_value']:.2g}")
    seconds = time.perf_counter() - started
    if promoted_at is None:
        print("    not promoted within the replay")
        promoted_at = ticks[-1].to_pydatetime()
    periods = [("before the change (champion)", start, change),
               ("after the change, before promotion", change, promoted_at),
               ("after the promotion", promoted_at, ticks[-1] + timedelta(hours=1))]
    for name, since, until in periods:
        auc, best, n = served_auc(engine, since, until, oracle)
        text = "n/a" if auc is None else f"{auc:.3f}   (oracle {best:.3f}, n={n})"
        print(f"    served AUC {name:<36} {text}")
    print(f"    replayed {len(ticks)} ticks in {seconds:.0f} s; promotion needed "
          f"{promoted_n} shared outcomes (minimum {args.min_outcomes})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("latency", "regime", "all"), default="all")
    parser.add_argument("--candles", type=int, default=200, help="latency: candles timed")
    parser.add_argument("--challenger", default="xgboost")
    parser.add_argument("--drift-scale", type=float, default=3.0,
                        help="regime drifts x this (the change flips their sign)")
    parser.add_argument("--persistence", type=float, default=0.98,
                        help="probability that a regime lasts another candle")
    parser.add_argument("--pre-days", type=int, default=10)
    parser.add_argument("--post-train-days", type=int, default=30)
    parser.add_argument("--after-days", type=int, default=60)
    parser.add_argument("--min-outcomes", type=int, default=50)
    parser.add_argument("--check-every", type=int, default=6, help="candles between checks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("latency", "all"):
            latency(Path(tmp), args.candles)
        if args.part in ("regime", "all"):
            regime_change(Path(tmp), args)


if __name__ == "__main__":
    main()
