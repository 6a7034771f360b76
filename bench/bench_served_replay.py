"""What users receive: train on the first 75% of a synthetic history, replay the rest through the
real tick path, then judge what was served with ``signalcast report``'s data.

An embedded deployment (SQLite file; the ticks of ``signalcast replay``: ingest -> predict |
resolve, one drain, run in this process as ``ops/replay.py`` runs them, or with
``--through-workers`` through an in-process Celery worker) on the packaged synthetic market
(seed 7) with
the packaged targets (1%, 2%, 5% within 72 hourly candles) and ``models.champion: auto``
(training's walk-forward selection and skill gate). ``--assets`` assets, champions trained once
at the replay's start on the ``3 x ticks`` candles before it, then ``--ticks`` hourly ticks.

Prints, pooled and per (asset, target): served Brier of P(up first) vs the causal base rate
(and the three-outcome Brier), reliability bins holding >= 100 predictions within 0.05 of
their observed frequency, alerts stated minus realised (expired = miss), and the same for the
signals the skill gate held (what would have been sent without it).

    OMP_NUM_THREADS=1 python bench/bench_served_replay.py --assets 1 --ticks 2250 \
        --json /tmp/served.json --png /tmp/served_png

Nothing is asserted: the figures are reported as measured, met or not.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlmodel import select  # noqa: E402

from signalcast.alerts.rules import is_hit, outcome_result  # noqa: E402
from signalcast.config import Settings, load_settings  # noqa: E402
from signalcast.db.engine import init_db, session_scope  # noqa: E402
from signalcast.db.tables import ModelVersion, Outcome, Prediction  # noqa: E402
from signalcast.lifecycle.train import train_model  # noqa: E402
from signalcast.ops.replay import ReplayRunner  # noqa: E402
from signalcast.ops.report import QUEUED, UNDELIVERED, served_report  # noqa: E402
from signalcast.pipeline.ingest import ingest_asset  # noqa: E402
from signalcast.scheduler.jobs import candle_close_tick  # noqa: E402
from signalcast.tasks.runner import task_runtime, wait_tick  # noqa: E402

PACKAGED = ROOT / "signalcast" / "config" / "default.yaml"


def config(assets: int) -> dict:
    data = yaml.safe_load(PACKAGED.read_text())
    data["assets"] = data["assets"][:assets]
    # the console chat receives signal alerts (queued, drained to stdout), so alerts are sent
    data["alerts"] = {**data.get("alerts", {}), "console": True, "console_kinds": ["signal"],
                      "charts": False}
    return data


def threshold_signals(engine, settings: Settings, until, *, held_only: bool,
                      threshold: float | None = None) -> dict:
    """Served predictions whose direction crossed its alert threshold (``threshold``: this one
    for every target instead; ``held_only``: those the skill gate held): stated vs realised as
    if each had been sent (resolved ones; expired = miss), whoever receives alerts."""
    stated, hits = [], []
    with session_scope(engine, readonly=True) as session:
        for asset in settings.assets:
            for target in settings.targets:
                outcomes = dict(session.exec(select(Outcome.candle_time, Outcome.label).where(
                    Outcome.asset == asset.symbol, Outcome.target == target.key)).all())
                rows = session.exec(select(Prediction.candle_time, Prediction.prob_up,
                                           Prediction.prob_down).where(
                    Prediction.asset == asset.symbol, Prediction.target == target.key,
                    Prediction.served, Prediction.candle_time <= until,
                    *([Prediction.alert_held.is_not(None)] if held_only else []))).all()
                for t, p_up, p_down in rows:
                    p_down = 1 - p_up if p_down is None else p_down
                    direction, p = ("UP", p_up) if p_up >= p_down else ("DOWN", p_down)
                    if p < (threshold or target.alert_threshold) or t not in outcomes:
                        continue
                    stated.append(p)
                    hits.append(is_hit(outcome_result(direction, outcomes[t])))
    if not stated:
        return {"resolved": 0}
    return {"resolved": len(stated), "stated": float(np.mean(stated)),
            "realised": float(np.mean(hits)),
            "stated_minus_realised": float(np.mean(stated) - np.mean(hits))}


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def oracle_reliability(engine, settings: Settings, report: dict) -> dict:
    """The benchmark of the reliability figures: the synthetic market's Bayes-optimal forecast
    (the true [p_up, p_down, p_none] of each candle's hidden regime) judged the same way on the
    same resolved candles as the served forecast. A bin the oracle itself misses by more than
    0.05 is sampling error of the window, not miscalibration. ``pooled``: every series' rows
    together, as the served report pools them (block = the longest horizon)."""
    from signalcast.evaluation.suite import synthetic_candles

    symbols = [a.symbol for a in settings.assets]
    last = _utc(max(datetime.fromisoformat(s["last"]) for s in report["series"] if s["last"]))
    periods = int((last - settings.data.start).total_seconds() // 3600) + 2
    _, markets = synthetic_candles(settings, symbols, periods)
    out, pooled = {}, {"p": [], "labels": [], "horizon": 1}
    with session_scope(engine, readonly=True) as session:
        for section in report["series"]:
            if not section.get("scores"):
                continue
            asset, cfg = section["asset"], settings.target(section["target"])
            market = markets[asset]
            regimes = market.regimes(periods).to_numpy()
            outcomes = market.regime_outcomes(asset, cfg.pct, cfg.horizon)
            served = set(session.exec(select(Prediction.candle_time).where(
                Prediction.asset == asset, Prediction.target == cfg.key,
                Prediction.served)).all())
            rows = sorted((t, label) for t, label in session.exec(select(
                Outcome.candle_time, Outcome.label).where(
                Outcome.asset == asset, Outcome.target == cfg.key)).all() if t in served
                and (report["until"] is None
                     or _utc(t) <= _utc(datetime.fromisoformat(report["until"]))))
            pos = [int((_utc(t) - settings.data.start).total_seconds() // 3600)
                   for t, _ in rows]
            labels = np.array([label for _, label in rows])
            p3 = np.array([[outcomes[r].p_up, outcomes[r].p_down] for r in regimes[pos]])
            out[f"{asset} {cfg.key}"] = _judge(p3, labels, cfg.horizon)
            pooled["p"].append(p3)
            pooled["labels"].append(labels)
            pooled["horizon"] = max(pooled["horizon"], cfg.horizon)
    if pooled["p"]:
        out["pooled"] = _judge(np.concatenate(pooled["p"]), np.concatenate(pooled["labels"]),
                               pooled["horizon"])
    return out


def _judge(p3, labels, block) -> dict:
    """Both sides' reliability bins of forecasts ``p3`` ([p_up, p_down] rows) against
    ``labels``, judged as the served report judges them."""
    from signalcast.features import DOWN, UP
    from signalcast.ops.report import _consistent, _judged, reliability

    res = {}
    for j, side, lab in ((0, "up", UP), (1, "down", DOWN)):
        bins = reliability(p3[:, j], (labels == lab).astype(float), block=block)
        res[side] = {"bins": bins, **_judged(bins), "consistent": _consistent(bins)["consistent"]}
    return res


def print_intervals(report: dict) -> None:
    """Each judged bin (>= min_bin predictions) beside the 95% circular block-bootstrap interval
    of its observed frequency (block = the horizon) and its effective number of outcomes: "ok"
    is the goal's own test (within 0.05), "in CI" says whether the gap could be sampling
    error."""
    print("\njudged bins with the block-bootstrap interval of the observed frequency")
    print(f"{'series':<18}{'side':<5}{'bin':>8}{'n':>6}{'n_eff':>6}{'pred':>7}{'obs':>7}"
          f"{'95% interval':>15}{'ok':>4}{'in CI':>6}")
    for section in [*report["series"], report["pooled"]]:
        scores = section.get("scores") or {}
        name = f"{section['asset']} {section['target']}" if section["asset"] != "pooled" \
            else "pooled"
        for side in ("up", "down"):
            for b in scores.get(f"reliability_{side}", []):
                if b["within"] is None:
                    continue
                print(f"{name:<18}{side:<5}{b['lo']:>4.1f}-{b['hi']:.1f}{b['n']:>6}"
                      f"{b['n_eff']:>6.0f}{b['predicted']:>7.3f}{b['observed']:>7.3f}"
                      f"   [{b['observed_lo']:.3f}, {b['observed_hi']:.3f}]"
                      f"{'yes' if b['within'] else 'NO':>4}"
                      f"{'yes' if b['consistent'] else 'NO':>6}")
        for side in ("up", "down"):
            j, c = scores.get(f"bins_{side}"), scores.get(f"bins_{side}_consistent")
            if j and c:
                print(f"{name}: P({side} first) {j['within']} of {j['judged']} judged bins "
                      f"within 0.05; {c['consistent']} of {c['judged']} inside their interval")
        a = section.get("alerts") or {}
        if a.get("resolved"):
            print(f"{name}: alerts stated {a['stated']:.3f}, realised {a['realised']:.3f} "
                  f"({a['hits']}/{a['resolved']}, {a.get('episodes', '?')} episodes; 95% "
                  f"interval {a.get('realised_lo', float('nan')):.2f}-"
                  f"{a.get('realised_hi', float('nan')):.2f}); stated - realised "
                  f"{a['stated_minus_realised']:+.3f} [{a.get('gap_lo', float('nan')):+.2f}, "
                  f"{a.get('gap_hi', float('nan')):+.2f}]")


def replay_ticks(args, stored: Settings, t0, horizon: int, tick, started: float) -> int:
    """``args.ticks`` ticks from ``t0``, then the horizon's ticks that resolve what the last
    ones left pending; returns the failures counted."""
    failures = 0
    for i in range(args.ticks + horizon + 1):
        failures += tick(t0 + timedelta(hours=i, seconds=stored.schedule.predict_delay_seconds))
        if (i + 1) % max(1, args.ticks // 10) == 0 and i < args.ticks:
            print(f"  tick {i + 1}/{args.ticks}, {time.perf_counter() - started:.0f} s",
                  flush=True)
    return failures


def run(args, settings: Settings, stored: Settings, engine, t0, horizon: int) -> dict:
    """Seed, train the champions at ``t0``, replay ``args.ticks`` ticks; returns timings."""
    end = t0 + timedelta(hours=args.ticks + horizon + 1)
    with session_scope(engine) as session:
        for a in settings.assets:
            ingest_asset(session, settings, a.symbol, end)
    print(f"{len(settings.assets)} asset(s) x {len(settings.targets)} targets; training "
          f"{settings.models.champion} at {t0:%Y-%m-%d %H:%M} on {3 * args.ticks} candles ...",
          flush=True)
    started = time.perf_counter()
    train_s = {}
    for a in settings.assets:
        for t in settings.targets:
            one = time.perf_counter()
            train_model(engine, settings, a.symbol, t.key, settings.models.champion, now=t0)
            train_s[f"{a.symbol} {t.key}"] = round(time.perf_counter() - one, 1)
    train_total = time.perf_counter() - started
    print(json.dumps({"train_s": train_s}), flush=True)
    started, failures = time.perf_counter(), 0
    if args.through_workers:  # the Celery tick chain on an embedded worker
        with task_runtime(stored):
            def tick(now):
                return len(wait_tick(candle_close_tick(engine, stored, now, job="served")))
            failures = replay_ticks(args, stored, t0, horizon, tick, started)
    else:  # signalcast replay's default: the same steps in this process (ops/replay.py)
        runner = ReplayRunner(engine, stored, job="served")
        failures = replay_ticks(args, stored, t0, horizon,
                                lambda now: len(runner.tick(now).failures), started)
    replay_s = time.perf_counter() - started
    return {"train_s": round(train_total, 1), "train_s_per_target": train_s,
            "replay_s": round(replay_s, 1), "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assets", type=int, default=1)
    parser.add_argument("--ticks", type=int, default=2250)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--png", type=Path, help="write the reliability diagrams here")
    parser.add_argument("--reuse", type=Path, help="a finished run's directory: report only")
    parser.add_argument("--through-workers", action="store_true",
                        help="replay through an embedded Celery worker (slower, same results)")
    args = parser.parse_args()
    # on the simulated clock every drain finds the new signals stale and expires them (counted
    # below as what the replay would have sent): one warning per tick says nothing here
    logging.getLogger("signalcast.alerts.drain").setLevel(logging.ERROR)

    tmp = args.reuse or Path(tempfile.mkdtemp(prefix="signalcast-served-"))
    config_path = tmp / "served.yaml"
    if not args.reuse:
        config_path.write_text(yaml.safe_dump(config(args.assets)))
    db_url = f"sqlite:///{tmp / 'served.db'}"
    settings = load_settings(config_path, database_url=db_url, broker_url=None,
                             telegram_token=None)
    engine = init_db(db_url)
    horizon = max(t.horizon for t in settings.targets)
    t0 = settings.data.start + timedelta(hours=3 * args.ticks)  # 75% before, 25% replayed
    stored = Settings(settings.file.model_copy(update={"data": settings.file.data.model_copy(
        update={"source": "stored"})}), settings.env, settings.source)
    timings = {} if args.reuse else run(args, settings, stored, engine, t0, horizon)
    with session_scope(engine, readonly=True) as session:
        champions = {f"{m.asset} {m.target}": {
            "family": m.family, "gate_open": m.metrics.get("gate_open"),
            "gate_reason": m.metrics.get("gate_reason"),
            "wf_skill": m.metrics.get("brier_skill"), "wf_skill_lower": m.metrics.get(
                "skill_lower")} for m in session.exec(select(ModelVersion).where(
                    ModelVersion.role == "champion")).all()}
    until = t0 + timedelta(hours=args.ticks - 1)
    # on the simulated clock the drain finds every signal stale (status expired, not delivered):
    # they are what the replay would have sent, so they count here
    report = served_report(engine, stored, until=until, alert_statuses=QUEUED + UNDELIVERED)
    pooled = report["pooled"]["scores"] or {}
    result = {
        "assets": len(settings.assets), "targets": len(settings.targets), "ticks": args.ticks,
        **timings,
        "champions": champions,
        "pooled": {k: pooled.get(k) for k in (
            "n", "brier_up", "base_brier_up", "skill_up", "skill_up_lower", "brier3",
            "base_brier3", "skill3", "skill3_lower", "auc", "auc_null_mean", "auc_null_sd",
            "bins_up", "bins_down", "bins_up_consistent", "bins_down_consistent")},
        "served_brier_at_most_base": (pooled.get("brier_up") is not None
                                      and pooled["brier_up"] <= pooled["base_brier_up"]),
        "alerts": report["pooled"]["alerts"],
        "held_signals": threshold_signals(engine, stored, until, held_only=True),
        "threshold_signals": threshold_signals(engine, stored, until, held_only=False),
        # what alerts would have said at lower thresholds than the configured ones
        "at_thresholds": {f"{thr:.2f}": threshold_signals(engine, stored, until,
                                                          held_only=False, threshold=thr)
                          for thr in (0.55, 0.60, 0.65, 0.70)},
        "series": [{"series": f"{s['asset']} {s['target']}", "alerts": s["alerts"],
                    **{k: (s["scores"] or {}).get(k) for k in (
                        "n", "brier_up", "base_brier_up", "skill_up", "skill_up_lower",
                        "bins_up", "bins_down", "bins_up_consistent", "bins_down_consistent",
                        "auc", "auc_null_mean")}}
                   for s in report["series"]],
    }
    from rich.console import Console

    from signalcast.cli.report import print_report, write_pngs

    print_report(report, Console(width=80), every_bin=True)
    print_intervals(report)
    oracle = oracle_reliability(engine, stored, report)
    result["oracle_reliability"] = {k: {side: {"judged": v[side]["judged"],
                                               "within": v[side]["within"],
                                               "consistent": v[side]["consistent"]}
                                        for side in ("up", "down")} for k, v in oracle.items()}
    print("\nbenchmark: the Bayes-optimal forecast (true regime probabilities) on the same "
          "resolved candles")
    for key, v in oracle.items():
        for side in ("up", "down"):
            b = [f"{x['predicted']:.2f}/{x['observed']:.2f}" for x in v[side]["bins"]
                 if x["within"] is not None]
            print(f"oracle {key} P({side} first): {v[side]['within']} of {v[side]['judged']} "
                  f"judged bins within 0.05, {v[side]['consistent']} inside their interval "
                  f"(pred/obs {' '.join(b)})")
    if args.png:
        write_pngs(report, args.png)
    print("\nstated vs realised of every served prediction at or above a threshold "
          "(as if each were an alert; expired = miss), pooled")
    for thr, s in result["at_thresholds"].items():
        print(f"  >= {thr}: " + ("none" if not s["resolved"] else
              f"{s['resolved']} predictions, stated {s['stated']:.3f}, realised "
              f"{s['realised']:.3f}, stated - realised {s['stated_minus_realised']:+.3f}"))
    print(json.dumps(result, indent=1, default=str))
    if args.json:
        args.json.write_text(json.dumps({"summary": result, "report": report}, indent=1,
                                        default=str))


if __name__ == "__main__":
    main()
