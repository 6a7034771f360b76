"""Lifecycle figures: promotion delay after a planted change, false promotions and drift false
alarms without one, on the packaged synthetic market (signalcast.data.synthetic).

What runs (per seed), on hourly candles of one target (default 2pct_72, a default target;
its outcomes resolve 72 candles later):

* the **champion** is fitted once, at the start of the live period, on the trailing
  ``--window-days`` of resolved rows;
* the **challenger policy** is the default cadence, a retrain every day on the trailing window
  (``schedule.retrain_cron`` is daily): each day's version predicts that day's 24 candles, and
  its record is the union of its versions' predictions (signalcast.routing.router.lineage);
* a drift alarm opens a new comparison epoch, as in production: the record restarts after
  the alarm's block, with the epoch's own level (signalcast.stats.sequential.epoch_alpha);
* every simulated day the **same promotion test** as production
  (signalcast.routing.promotion.compare + signalcast.stats.sequential.look_at: three-outcome
  Brier, Diebold-Mariano with Newey-West lags 3H, looks at fixed information points with alpha
  spending) runs on the shared outcomes resolved by then; the first qualifying look promotes;
* the champion's **drift detector** (signalcast.stats.drift, the production CUSUM on block
  Brier per 72-candle block, default threshold/slack/warm-up) runs on its block losses.

With ``--change-day D`` the market's law changes on live day D. The default change
(``--change volatility``) is a volatility regime change, the kind a user calls one ("the market
got twice as wild"): from then on every regime's volatility is ``--vol-factor`` (2) times what
it was, drifts, persistence and volume unchanged; levels 2% away are touched sooner and more
often, so the frozen champion's touch and direction probabilities are wrong and it is clearly
worse afterwards, while a retrain on recent data can learn the new law. ``--change mirror`` is
the change this bench planted before, kept to show why it did not test anything: candles became
the mirror image (log returns negated) of a market whose bull and bear swapped volatility and
volume, and the two inversions cancel (the high-volatility regime falls again) while mirroring
keeps momentum, so what a model learned still held: the champion was hardly worse and 1/20
seeds promoted, the same one as without a change. Without a change (``--change-day -1``) the
law never changes; the daily retrain may still be slightly better (regimes persist for days, a
recent window knows the current one), so the test's size is measured with ``--null
exchangeable``: the challenger is a frozen twin fitted on the window before the champion's
(same expected skill; every promotion is a false one), judged every day like the cadence.

The models are quick: a multinomial logistic regression on six of the production features
(volatility, volume, trend; not LightGBM on all of them): the test and the cadence are what is
measured, and it keeps 20 seeds x 60 days of daily refits affordable on 2 cores. Say so when
quoting the figures. Results: bench/bench_lifecycle_results.txt.

    python bench/bench_lifecycle.py --seeds 20 --days 60 --change-day 10
    python bench/bench_lifecycle.py --seeds 20 --days 60 --change-day -1
    python bench/bench_lifecycle.py --seeds 20 --days 60 --change-day -1 --null exchangeable
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import pandas as pd

from signalcast.config.routing import RoutingConfig
from signalcast.data.synthetic import DEFAULT_SPEC, SyntheticMarket
from signalcast.features import compute_features
from signalcast.features.labels import DOWN, EXPIRED, UP, first_touch_labels
from signalcast.routing.promotion import LAGS_PER_HORIZON, compare, effective_horizon
from signalcast.stats import drift as cusum
from signalcast.stats.sequential import epoch_alpha, first_look, look_at

DAY = 24


def mirrored_spec():
    """Bull and bear swap volatility and volume (drifts keep their sign): ``--change mirror``."""
    calm, bull, bear = DEFAULT_SPEC.regimes
    return dataclasses.replace(DEFAULT_SPEC, regimes=(
        calm, dataclasses.replace(bull, vol=bear.vol, volume=bear.volume),
        dataclasses.replace(bear, vol=bull.vol, volume=bull.volume)))


def wilder_spec(factor: float):
    """Every regime's volatility times ``factor``: ``--change volatility``."""
    return dataclasses.replace(DEFAULT_SPEC, regimes=tuple(
        dataclasses.replace(r, vol=r.vol * factor) for r in DEFAULT_SPEC.regimes))


def market(seed: int, periods: int, change_at: int | None, change: str = "volatility",
           vol_factor: float = 2.0) -> pd.DataFrame:
    """Candles of one seed; from ``change_at`` on, candles of the changed market (a fresh
    stream), spliced on the price (``mirror``: their mirror image)."""
    frame = SyntheticMarket(["BTC/USDT"], seed=seed).generate(periods)["BTC/USDT"]
    if change_at is None:
        return frame
    spec = mirrored_spec() if change == "mirror" else wilder_spec(vol_factor)
    after = SyntheticMarket(["BTC/USDT"], seed=seed + 10_000, spec=spec).generate(
        periods - change_at)["BTC/USDT"]
    pivot = float(after["open"].iloc[0])
    if change == "mirror":
        flip = {"open": "open", "high": "low", "low": "high", "close": "close"}
        spliced = pd.DataFrame({col: pivot ** 2 / after[src].to_numpy()
                                for col, src in flip.items()}, index=frame.index[change_at:])
    else:
        spliced = pd.DataFrame({col: after[col].to_numpy()
                                for col in ("open", "high", "low", "close")},
                               index=frame.index[change_at:])
    spliced["volume"] = after["volume"].to_numpy()
    spliced[["open", "high", "low", "close"]] *= frame["close"].iloc[change_at - 1] / pivot
    return pd.concat([frame.iloc[:change_at], spliced])


def onehot(labels: np.ndarray) -> np.ndarray:
    return np.column_stack([labels == UP, labels == DOWN, labels == EXPIRED]).astype(float)


C = 1.0
# what tells the synthetic regimes apart (volatility, volume, trend): a quick model with skill
QUICK_FEATURES = ("rv_24", "rv_168", "vlm_ratio_24", "vlm_ratio_168", "ret_24", "ret_168")


def fit(X: np.ndarray, labels: np.ndarray):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=300))
    return model.fit(X, labels)


def probs(model, X: np.ndarray) -> np.ndarray:
    classes = list(model.classes_)
    raw = model.predict_proba(X)
    out = np.zeros((len(X), 3))
    for j, cls in enumerate((UP, DOWN, EXPIRED)):
        if cls in classes:
            out[:, j] = raw[:, classes.index(cls)]
    return out / out.sum(axis=1, keepdims=True)


def run_seed(seed: int, args, routing: RoutingConfig) -> dict:
    h, window = args.horizon, args.window_days * DAY
    # history before the live period (features' lookback too; two windows for the twin)
    start = (2 if args.null == "exchangeable" else 1) * window + 14 * DAY
    periods = start + args.days * DAY + h + 1
    change_at = None if args.change_day < 0 else start + args.change_day * DAY
    candles = market(seed, periods, change_at, args.change, args.vol_factor)
    X = compute_features(candles, "1h")[list(QUICK_FEATURES)].to_numpy()
    labels = first_touch_labels(candles, args.pct, h)["label"].to_numpy()
    ok = np.isfinite(X).all(axis=1)

    def train_rows(now: int) -> np.ndarray:  # labels resolved by candle ``now``
        idx = np.arange(max(0, now - h - window), now - h)
        return idx[ok[idx] & (labels[idx] >= EXPIRED)]

    rows = train_rows(start)
    champion = fit(X[rows], labels[rows])
    frozen = None
    if args.null == "exchangeable":  # a frozen twin trained on the window before the champion's
        earlier = train_rows(start - window)
        frozen = fit(X[earlier], labels[earlier])
    live = np.arange(start, start + args.days * DAY)
    p_champ = probs(champion, np.nan_to_num(X[live]))
    p_chal = np.zeros_like(p_champ)
    policy = routing.default
    promoted, state, alarms, blocks = None, cusum.CusumState(), 0, []
    epoch, epoch_start = 0, 0  # drift alarms so far, first outcome of the epoch's record
    for day in range(args.days):
        now = start + day * DAY
        rows = train_rows(now)
        version = frozen if frozen is not None else fit(X[rows], labels[rows])
        span = slice(day * DAY, (day + 1) * DAY)
        p_chal[span] = probs(version, np.nan_to_num(X[live[span]]))
        end = now + DAY  # the day's close: outcomes resolved by then
        resolved = live[(live + h <= end) & (live < end)]
        n = len(resolved)
        # drift: blocks of h candles whose outcomes all resolved
        while (len(blocks) + 1) * h <= n:
            b = len(blocks)
            sl = slice(b * h, (b + 1) * h)
            loss = float(np.mean(np.sum((p_champ[sl] - onehot(labels[live[sl]])) ** 2, 1)))
            blocks.append(loss)
            if cusum.update(state, loss, warmup=routing.drift_warmup_blocks,
                            k=routing.drift_slack, h=routing.drift_threshold):
                alarms += 1  # a new comparison epoch: the record restarts after this block
                epoch, epoch_start = epoch + 1, (b + 1) * h
        if promoted is not None:
            continue
        look = look_at(n - epoch_start, policy.promote_min_outcomes,
                       epoch_alpha(epoch, policy.promote_significance),
                       horizon=effective_horizon(policy, h))
        if look is None:
            continue
        used = slice(epoch_start, epoch_start + look.n)
        y = onehot(labels[resolved[used]])
        stats = compare(p_champ[used], p_chal[used], y, lags=LAGS_PER_HORIZON * h,
                        margin=policy.promote_margin)
        if stats["p_value"] < look.alpha and stats["mean_diff"] < -policy.promote_margin:
            since = None if change_at is None else int(np.sum(resolved >= change_at))
            promoted = {"day": day + 1, "n_shared": n - epoch_start, "look": look.index,
                        "epoch": epoch,
                        "outcomes_since_change": since, "p_value": stats["p_value"],
                        "brier": (stats["brier_champion"], stats["brier_challenger"])}
    return {"seed": seed, "promoted": promoted, "alarms": alarms, "blocks": len(blocks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--change-day", type=int, default=10, help="-1: no change")
    parser.add_argument("--window-days", type=int, default=60,
                        help="trailing training window (production: training.history_candles)")
    parser.add_argument("--change", choices=["volatility", "mirror"], default="volatility",
                        help="the planted change (module docstring)")
    parser.add_argument("--vol-factor", type=float, default=2.0,
                        help="--change volatility: every regime's volatility times this")
    parser.add_argument("--pct", type=float, default=0.02)
    parser.add_argument("--null", choices=["cadence", "exchangeable"], default="cadence",
                        help="exchangeable: the challenger is a frozen model fitted on the "
                             "window before the champion's (same expected skill: the test's "
                             "size under daily looks)")
    parser.add_argument("--horizon", type=int, default=72)
    args = parser.parse_args()
    routing = RoutingConfig()
    began = time.perf_counter()
    results = [run_seed(1000 + s, args, routing) for s in range(args.seeds)]
    promoted = [r for r in results if r["promoted"]]
    months = args.seeds * args.days / 30
    change = (f"volatility x{args.vol_factor:g}" if args.change == "volatility" else "mirror")
    print(f"{args.seeds} seeds x {args.days} days, target {args.pct:g}/{args.horizon}, "
          f"challenger {'frozen twin' if args.null == 'exchangeable' else 'daily retrain'}, "
          f"window {args.window_days} days, change "
          f"{'none' if args.change_day < 0 else f'{change} on day {args.change_day}'}; "
          f"first look {first_look(routing.default.promote_min_outcomes, args.horizon)} "
          f"outcomes, level "
          f"{routing.default.promote_significance}; {time.perf_counter() - began:.0f} s")
    for r in results:
        p = r["promoted"]
        print(f"  seed {r['seed']}: " + ("kept" if p is None else
              f"promoted day {p['day']} ({p['n_shared']} shared, epoch {p['epoch']}, "
              f"look {p['look']}, "
              f"{p['outcomes_since_change']} since change, p={p['p_value']:.2g}, Brier "
              f"{p['brier'][0]:.4f} -> {p['brier'][1]:.4f})") + f"; drift alarms {r['alarms']}")
    print(f"promoted: {len(promoted)}/{len(results)} seeds")
    if promoted and args.change_day >= 0:
        since = np.array([r["promoted"]["outcomes_since_change"] for r in promoted])
        print(f"resolved outcomes since the change at promotion: median {np.median(since):.0f}, "
              f"range {since.min()}-{since.max()}")
    alarms = sum(r["alarms"] for r in results)
    print(f"drift alarms: {alarms} in {months:.1f} simulated months "
          f"({alarms / months:.2f} per month; {sum(r['blocks'] for r in results)} blocks)")


if __name__ == "__main__":
    main()
