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
* a drift alarm's retrain is trained on the recent window, as in production
  (``--drift-retrain once``, default): the change point is production's
  (signalcast.pipeline.drift.cusum_step: the first block of the CUSUM's rise), the window
  production's (signalcast.lifecycle.train.drift_window, doubled by ``widened`` while
  ``evidence_ready`` says its rows cannot make the walk-forward folds) with the bench's window
  as ``training.history_candles``; that version predicts the next day, then the daily retrain
  on the full window resumes (in production the next scheduled retrain replaces it within a
  day, so one day is its longest life). ``--drift-retrain none`` is the figures before;
  ``--drift-retrain sticky`` and ``--oracle-alarm`` are what-ifs that are not in the product
  (every retrain after an alarm on the window since its change point; an ideal detector's
  alarm at the first block wholly after the planted change);
* every simulated day the **same promotion test** as production
  (signalcast.routing.promotion.compare + signalcast.stats.sequential.evidence: three-outcome
  Brier, Diebold-Mariano with Newey-West lags 3H, an always-valid normal-mixture e-value on the
  whole record of the epoch against 1 / level) runs on the shared outcomes resolved by then;
  the first qualifying day promotes. Beside it, on the same predictions, the rule it replaced
  (looks at ``n_first * 2^(k-1)`` outcomes at ``level / 2^k``) as the reference;
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
    python bench/bench_lifecycle.py --seeds 20 --days 60 --change-day 10 --window-days 365
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import pandas as pd

from signalcast.config.models import TrainingConfig
from signalcast.config.routing import RoutingConfig
from signalcast.data.synthetic import DEFAULT_SPEC, SyntheticMarket
from signalcast.features import MAX_LOOKBACK, compute_features
from signalcast.features.labels import DOWN, EXPIRED, UP, first_touch_labels
from signalcast.lifecycle.train import drift_window, evidence_ready, widened
from signalcast.pipeline.drift import cusum_step
from signalcast.routing.promotion import LAGS_PER_HORIZON, compare, effective_horizon
from signalcast.stats import drift as cusum
from signalcast.stats.sequential import epoch_alpha, evidence, first_look

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


RULES = ("always-valid", "looks")  # production's rule first, the replaced one as reference


def looks_rule(n: int, n_first: int, alpha: float) -> tuple[int, int, float] | None:
    """The replaced rule, kept as the reference: look k uses the oldest ``n_first * 2^(k-1)``
    outcomes at ``alpha / 2^k`` (None: before the first look); (k, outcomes, level)."""
    if n < n_first:
        return None
    k = 1
    while n_first * 2 ** k <= n:
        k += 1
    return k, n_first * 2 ** (k - 1), alpha / 2 ** k


def decide(rule: str, p_champ: np.ndarray, p_chal: np.ndarray, y: np.ndarray, n_first: int,
           level: float, lags: int, margin: float) -> dict | None:
    """One day's promotion test of the epoch's record under ``rule`` (the stats when the
    challenger qualifies)."""
    if rule == "looks":
        look = looks_rule(len(y), n_first, level)
        if look is None:
            return None
        k, n, alpha = look
        stats = compare(p_champ[:n], p_chal[:n], y[:n], lags=lags, margin=margin)
        passed = stats["p_value"] < alpha
        stats["look"] = k
    else:
        if len(y) < n_first:
            return None
        stats = compare(p_champ, p_chal, y, lags=lags, margin=margin)
        test = evidence(-stats["statistic"], stats["df"], len(y), n_first, level)
        passed, stats["e_value"] = test.passed, test.e_value
    return stats if passed and stats["mean_diff"] < -margin else None


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

    # production's drift window (lifecycle.train.drift_window / widened / evidence_ready) with
    # the bench's full window as training.history_candles, the other training defaults
    training = TrainingConfig(history_candles=window + MAX_LOOKBACK + h)

    def window_rows(candles: int, now: int) -> np.ndarray:  # the newest ``candles`` before now
        idx = np.arange(max(0, now - candles + MAX_LOOKBACK), now - h)
        return idx[ok[idx] & (labels[idx] >= EXPIRED)]

    def drift_rows(now: int, change: int) -> tuple[np.ndarray, int | None]:
        """The rows a drift retrain at ``now`` trains on (change point at candle ``change``)."""
        candles = drift_window(training, h, now - change)
        while candles is not None:
            rows = window_rows(candles, now)
            if evidence_ready(training, rows, labels[rows], h):
                return rows, candles
            candles = widened(training, candles)
        return train_rows(now), None

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
    n_first = first_look(policy.promote_min_outcomes, effective_horizon(policy, h))
    promoted = dict.fromkeys(RULES)
    state, alarms, blocks, rise = cusum.CusumState(), 0, [], None
    epoch, epoch_start = 0, 0  # drift alarms so far, first outcome of the epoch's record
    change_seen = None  # candle of the change point the newest alarm implies (not yet used)
    windows = []  # the drift retrains' windows (candles; None: the full window)
    oracle_done = False
    for day in range(args.days):
        now = start + day * DAY
        rows = train_rows(now)
        if frozen is None and change_seen is not None and args.drift_retrain != "none":
            rows, candles = drift_rows(now, change_seen)
            windows.append(candles)
            if args.drift_retrain == "once" or candles is None:
                change_seen = None  # the scheduled retrain on the full window resumes
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
            fired, rise, change = cusum_step(state, rise, b, loss, routing)
            if (args.oracle_alarm and change_at is not None and not oracle_done
                    and start + b * h >= change_at):  # the first block wholly after it
                fired, change, oracle_done = True, b, True
            if fired:
                alarms += 1  # a new comparison epoch: the record restarts after this block
                epoch, epoch_start = epoch + 1, (b + 1) * h
                change_seen = start + change * h  # its drift retrain: the next version
        level = epoch_alpha(epoch, policy.promote_significance)
        used = slice(epoch_start, n)
        y = onehot(labels[resolved[used]])
        for rule in RULES:
            if promoted[rule] is not None:
                continue
            stats = decide(rule, p_champ[used], p_chal[used], y, n_first, level,
                           LAGS_PER_HORIZON * h, policy.promote_margin)
            if stats is not None:
                since = None if change_at is None else int(np.sum(resolved >= change_at))
                promoted[rule] = {"day": day + 1, "n_shared": n - epoch_start,
                                  "epoch": epoch, "outcomes_since_change": since,
                                  "n_tested": stats["n"], "look": stats.get("look"),
                                  "e_value": stats.get("e_value"), "p_value": stats["p_value"],
                                  "brier": (stats["brier_champion"],
                                            stats["brier_challenger"])}
    first = start if change_at is None else change_at
    after = live[(live + h <= live[-1]) & (live >= first)]
    y_after = onehot(labels[after])
    gap = (float(np.mean(np.sum((p_chal[after - start] - y_after) ** 2, 1)))
           - float(np.mean(np.sum((p_champ[after - start] - y_after) ** 2, 1))))
    return {"seed": seed, "promoted": promoted, "alarms": alarms, "blocks": len(blocks),
            "windows": windows, "gap": gap}


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
    parser.add_argument("--drift-retrain", choices=["once", "none", "sticky"], default="once",
                        help="once (production): the version after a drift alarm is trained on "
                             "the recent window (training.drift_window), later daily retrains "
                             "on the full window; none: every version on the full window (the "
                             "figures before); sticky (a what-if, not in the product): every "
                             "retrain after an alarm on the window since its change point, "
                             "until that reaches the full window")
    parser.add_argument("--oracle-alarm", action="store_true",
                        help="a what-if: a drift alarm (new epoch, drift retrain) at the first "
                             "block wholly after the planted change, as an ideal detector "
                             "would raise once its outcomes resolved (the CUSUM's own alarms "
                             "still count)")
    args = parser.parse_args()
    routing = RoutingConfig()
    began = time.perf_counter()
    results = [run_seed(1000 + s, args, routing) for s in range(args.seeds)]
    months = args.seeds * args.days / 30
    change = (f"volatility x{args.vol_factor:g}" if args.change == "volatility" else "mirror")
    print(f"{args.seeds} seeds x {args.days} days, target {args.pct:g}/{args.horizon}, "
          f"challenger {'frozen twin' if args.null == 'exchangeable' else 'daily retrain'}, "
          f"window {args.window_days} days, drift retrain {args.drift_retrain}"
          f"{' (oracle alarm at the change)' if args.oracle_alarm else ''}, change "
          f"{'none' if args.change_day < 0 else f'{change} on day {args.change_day}'}; "
          f"first decision at {first_look(routing.default.promote_min_outcomes, args.horizon)} "
          f"outcomes, level "
          f"{routing.default.promote_significance}; {time.perf_counter() - began:.0f} s")
    for r in results:
        print(f"  seed {r['seed']}: drift alarms {r['alarms']}, challenger - champion Brier "
              f"{r['gap']:+.4f}")
        for rule in RULES:
            p = r["promoted"][rule]
            print(f"    {rule:>12}: " + ("kept" if p is None else
                  f"promoted day {p['day']} ({p['n_shared']} shared, {p['n_tested']} tested, "
                  f"epoch {p['epoch']}"
                  + (f", look {p['look']}" if p["look"] else f", e-value {p['e_value']:.3g}")
                  + f", {p['outcomes_since_change']} since change, DM p={p['p_value']:.2g}, "
                  f"Brier {p['brier'][0]:.4f} -> {p['brier'][1]:.4f})"))
    for rule in RULES:
        promoted = [r["promoted"][rule] for r in results if r["promoted"][rule]]
        label = ("always-valid (production)" if rule == "always-valid"
                 else "looks at doublings (replaced; reference)")
        print(f"{label}: promoted {len(promoted)}/{len(results)} seeds")
        if promoted and args.change_day >= 0:
            since = np.array([p["outcomes_since_change"] for p in promoted])
            days = np.array([p["day"] for p in promoted])
            print(f"  resolved outcomes since the change at promotion: median "
                  f"{np.median(since):.0f}, range {since.min()}-{since.max()}; day median "
                  f"{np.median(days):.0f}")
        won = [r["gap"] for r in results if r["promoted"][rule]]
        kept = [r["gap"] for r in results if not r["promoted"][rule]]
        print("  challenger - champion Brier over the run: median "
              + ", ".join(f"{np.median(g):+.4f} in the {len(g)} {name} seeds"
                          for g, name in ((won, "promoted"), (kept, "kept")) if g))
    gaps = np.array([r["gap"] for r in results])
    print("challenger - champion Brier on the live outcomes"
          + (" after the change" if args.change_day >= 0 else "")
          + f" resolved in the run: median {np.median(gaps):+.4f}, challenger better in "
          f"{int(np.sum(gaps < 0))}/{len(gaps)} seeds")
    windows = [w for r in results for w in r["windows"]]
    if windows:
        recent = [w for w in windows if w is not None]
        print(f"drift retrains: {len(windows)} versions, {len(recent)} on a recent window"
              + (f" (candles: median {np.median(recent):.0f}, range {min(recent)}-{max(recent)})"
                 if recent else ""))
    alarms = sum(r["alarms"] for r in results)
    print(f"drift alarms: {alarms} in {months:.1f} simulated months "
          f"({alarms / months:.2f} per month; {sum(r['blocks'] for r in results)} blocks)")


if __name__ == "__main__":
    main()
