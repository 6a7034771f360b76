"""Walk-forward figures of every registered family: synthetic market (next to the oracle) and
real series shipped inside a PyPI package (next to ``random_forest``).

Synthetic: the packaged default config's assets x targets, ``--periods`` hourly candles (default
17520 = 2 years) from its data seed, each family with the config's ``models.params`` (else the
family's defaults). Real: ``backtesting``'s bundled CSVs (``pip install backtesting``): EUR/USD
hourly (5,000 candles, Apr 2017 - Feb 2018) and GOOG daily (2,148 candles, 2004 - 2013), read
from the installed distribution, never downloaded. No oracle exists for real data.

    python bench/bench_evaluate.py --out /tmp/eval.json [--report /tmp/eval.html] [--folds 5]

(asset, target) jobs run in ``--jobs`` processes (default 2); models are single-threaded.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from signalcast.config import TargetConfig, load_settings
from signalcast.data import SyntheticMarket
from signalcast.evaluation.folds import WalkForwardConfig
from signalcast.evaluation.report import comparison_rows, to_json, write_report
from signalcast.evaluation.suite import selected_families
from signalcast.evaluation.walkforward import evaluate_series

# Real series shipped in the `backtesting` wheel, with targets sized to their volatility.
REAL_SERIES = {
    "EURUSD-1h": ("backtesting/test/EURUSD.csv", "1h",
                  [TargetConfig(pct=0.003, horizon=24, alert_threshold=0.6),
                   TargetConfig(pct=0.005, horizon=72, alert_threshold=0.6)]),
    "GOOG-1d": ("backtesting/test/GOOG.csv", "1d",
                [TargetConfig(pct=0.05, horizon=20, alert_threshold=0.6)]),
}


def real_candles(relative_path: str) -> tuple[pd.DataFrame, str]:
    """A CSV from the installed ``backtesting`` distribution as a contract candle frame."""
    try:
        dist = importlib.metadata.distribution("backtesting")
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit("real-data figures need the data shipped in `backtesting`: "
                         "pip install backtesting") from None
    path = Path(dist.locate_file(relative_path))
    frame = pd.read_csv(path, index_col=0, parse_dates=True)
    frame.columns = [c.lower() for c in frame.columns]
    frame.index = pd.DatetimeIndex(frame.index, name="time").tz_localize("UTC")
    return frame[["open", "high", "low", "close", "volume"]].astype(float), str(path)


def run_job(job: dict):
    """One (series, target): every family walked forward. Jobs carry plain values, so workers
    never re-read the configuration (it may change while a long run is going)."""
    config = WalkForwardConfig(folds=job["folds"],
                               calibration_fraction=job["calibration_fraction"])
    started = time.perf_counter()
    target: TargetConfig = job["target"]
    if job["kind"] == "synthetic":
        market = SyntheticMarket(job["market_assets"], seed=job["seed"],
                                 timeframe=job["timeframe"], start=job["start"])
        frame = market.generate(job["periods"])[job["asset"]]
        oracle = market.oracle_probability(job["asset"], target.pct, target.horizon, len(frame))
    else:
        frame, _ = real_candles(REAL_SERIES[job["asset"]][0])
        oracle = None
    ev = evaluate_series(frame, job["timeframe"], target, job["families"], config,
                         asset=job["asset"], oracle=oracle)
    print(f"  done {job['asset']} {target.key} in {time.perf_counter() - started:.0f}s",
          flush=True)
    return job["kind"], ev


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(title: str, evaluations, families: list[str], reference: str) -> list[dict]:
    """Long table (series x family) and a per-family summary against ``reference``."""
    rows = comparison_rows(evaluations)
    ref = {(r["asset"], r["target"]): r for r in rows if r["family"] == reference}
    print(f"\n{title}\nAUC/Brier of the served (calibrated) OOF P(up); raw = before calibration;"
          " base = Brier of the rows' own base rate (a hindsight constant)")
    print(f"{'series':<10} {'target':<10} {'family':<14} {'rows':>5} {'AUC':>6} {'Brier':>6} "
          f"{'AUCraw':>6} {'Brraw':>6} {'base':>6} {'alerts':>6} {'prec':>6} {'sec':>5}")
    for r in rows:
        base = r["base_rate_up"] * (1 - r["base_rate_up"])
        print(f"{r['asset']:<10} {r['target']:<10} {r['family']:<14} {r['n']:>5} "
              f"{_f(r['auc']):>6} {_f(r['brier'], 4):>6} {_f(r['auc_raw']):>6} "
              f"{_f(r['brier_raw'], 4):>6} {base:>6.4f} {r['alerts']:>6} "
              f"{_f(r['precision']):>6} {_f(r['seconds'], 0):>5}")
    names = [*families, reference] if reference == "oracle" else families
    summary = []
    print(f"\nmean over {len(evaluations)} series ({reference} = reference)")
    print(f"{'family':<14} {'AUC':>6} {'Brier':>6} {'AUCraw':>6} {'Brraw':>6} "
          f"{'dAUC':>7} {'dBrier':>7} {'sec':>6}")
    for name in names:
        mine = [r for r in rows if r["family"] == name]

        def mean(key, subset=mine):
            values = [r[key] for r in subset if r[key] is not None]
            return float(np.mean(values)) if values else None

        item = {"family": name, "auc": mean("auc"), "brier": mean("brier"),
                "auc_raw": mean("auc_raw"), "brier_raw": mean("brier_raw"),
                "auc_minus_reference": float(np.mean(
                    [r["auc"] - ref[(r["asset"], r["target"])]["auc"] for r in mine])),
                "brier_minus_reference": float(np.mean(
                    [r["brier"] - ref[(r["asset"], r["target"])]["brier"] for r in mine])),
                "seconds": sum(r["seconds"] or 0.0 for r in mine)}
        summary.append(item)
        print(f"{name:<14} {_f(item['auc']):>6} {_f(item['brier'], 4):>6} "
              f"{_f(item['auc_raw']):>6} {_f(item['brier_raw'], 4):>6} "
              f"{item['auc_minus_reference']:>+7.3f} {item['brier_minus_reference']:>+7.4f} "
              f"{item['seconds']:>6.0f}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON output path")
    parser.add_argument("--report", type=Path, help="HTML file or PNG directory")
    parser.add_argument("--periods", type=int, default=17520)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--config", type=Path, help="YAML config (default: packaged)")
    parser.add_argument("--family", action="append", help="families (default: registered)")
    parser.add_argument("--no-real", action="store_true", help="skip the real series")
    args = parser.parse_args()

    settings = load_settings(args.config)
    families = selected_families(args.family)
    params = {f: settings.model_params(f) for f in families}
    base = {"families": params, "folds": args.folds, "periods": args.periods,
            "calibration_fraction": settings.training.calibration_fraction}
    market = {"seed": settings.data.seed, "start": settings.data.start,
              "market_assets": [a.symbol for a in settings.assets]}
    jobs = [{**base, **market, "kind": "synthetic", "asset": a.symbol, "timeframe": a.timeframe,
             "target": t} for a in settings.assets for t in settings.targets]
    if not args.no_real:
        jobs += [{**base, "kind": "real", "asset": name, "timeframe": timeframe, "target": t}
                 for name, (_, timeframe, targets) in REAL_SERIES.items() for t in targets]
    print(f"families: {', '.join(families)}; {args.folds} folds; {len(jobs)} series; "
          f"{args.jobs} processes", flush=True)
    started = time.perf_counter()
    results, failures = [], []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [(job, pool.submit(run_job, job)) for job in jobs]
        for job, future in futures:
            try:
                results.append(future.result())
            except Exception as exc:  # report the series, keep the others' figures
                failures.append(f"{job['asset']} {job['target'].key}: {exc}")
                print(f"  FAILED {failures[-1]}", flush=True)
    synthetic = [ev for kind, ev in results if kind == "synthetic"]
    real = [ev for kind, ev in results if kind == "real"]

    summary = {"synthetic": print_table(
        f"synthetic market, {args.periods} candles, seed {settings.data.seed}",
        synthetic, families, "oracle")}
    if real:
        reference = "random_forest" if "random_forest" in families else families[0]
        summary["real"] = print_table("real series from the backtesting wheel", real, families,
                                      reference)
    elapsed = time.perf_counter() - started
    print(f"\ntotal {elapsed:.0f}s wall on {args.jobs} processes")
    sources = {name: real_candles(rel)[1] for name, (rel, _, _) in REAL_SERIES.items()
               } if real else {}
    meta = {"families": families, "folds": args.folds, "periods": args.periods,
            "seed": settings.data.seed, "wall_seconds": elapsed, "real_sources": sources,
            "params": params, "summary": summary, "failures": failures}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(to_json([*synthetic, *real], meta), indent=2, default=str))
    print(f"JSON written to {args.out}")
    if args.report:
        write_report([*synthetic, *real], args.report, title="signalcast walk-forward bench")
        print(f"report written to {args.report}")


if __name__ == "__main__":
    main()
