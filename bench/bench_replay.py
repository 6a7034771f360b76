"""Replay cost per tick as stored history grows: does the last 10% of a replay cost what its
first 10% did?

An embedded deployment (SQLite file, in-process worker, the same tick chain as ``signalcast
replay``): N assets x the default three targets, a lightgbm champion plus the given shadow
families trained once at the start, then ``--ticks`` hourly ticks (ingest -> predict | resolve,
one drain) on a simulated clock over stored synthetic candles. Prints seconds per tick over
the first and last 10% of ticks, their ratio, and the whole replay's time.

    python bench/bench_replay.py --assets 3 --ticks 2000 --shadows xgboost,river

Figures go to stdout and, with --json, to a file. Nothing is asserted: machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from signalcast.config import Settings, load_settings  # noqa: E402
from signalcast.db.engine import init_db, session_scope  # noqa: E402
from signalcast.lifecycle.train import train_model  # noqa: E402
from signalcast.pipeline.ingest import ingest_asset  # noqa: E402
from signalcast.scheduler.jobs import candle_close_tick  # noqa: E402
from signalcast.tasks.runner import task_runtime, wait_tick  # noqa: E402

HISTORY_DAYS = 400  # candles before the first tick (training reads up to 8,760 of them)


def config(assets: int, shadows: list[str]) -> dict:
    data = {
        "assets": [{"symbol": f"R{i}/USDT"} for i in range(assets)],
        "targets": [{"pct": p, "horizon": 72, "alert_threshold": 0.99}
                    for p in (0.01, 0.02, 0.05)],
        "models": {"champion": "lightgbm", "params": {"lightgbm": {"n_estimators": 100}}},
        "training": {"history_candles": 3000, "min_rows": 300},
        "data": {"source": "synthetic", "seed": 7},
        "alerts": {"console": False},
    }
    if shadows:
        data["routing"] = {"default": {"shadows": shadows}}
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assets", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=2000)
    parser.add_argument("--shadows", default="xgboost,river")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    shadows = [s for s in args.shadows.split(",") if s]

    tmp = Path(tempfile.mkdtemp(prefix="signalcast-replay-"))
    config_path = tmp / "replay.yaml"
    config_path.write_text(yaml.safe_dump(config(args.assets, shadows)))
    db_url = f"sqlite:///{tmp / 'replay.db'}"
    settings = load_settings(config_path, database_url=db_url, broker_url=None,
                             telegram_token=None)
    engine = init_db(db_url)
    t0 = settings.data.start + timedelta(days=HISTORY_DAYS)
    end = t0 + timedelta(hours=args.ticks + 1)
    print(f"seeding {args.assets} assets to {end:%Y-%m-%d}, training lightgbm"
          f"{' + ' + ','.join(shadows) if shadows else ''} x 3 targets ...", flush=True)
    with session_scope(engine) as session:
        for a in settings.assets:
            ingest_asset(session, settings, a.symbol, end)
    started = time.perf_counter()
    for a in settings.assets:
        for t in settings.targets:
            for family in ["lightgbm", *shadows]:
                train_model(engine, settings, a.symbol, t.key, family, now=t0)
    train_s = time.perf_counter() - started
    stored = Settings(settings.file.model_copy(update={"data": settings.file.data.model_copy(
        update={"source": "stored"})}), settings.env, settings.source)
    seconds: list[float] = []
    failures = 0
    with task_runtime(stored):
        for i in range(args.ticks):
            now = t0 + timedelta(hours=i, seconds=stored.schedule.predict_delay_seconds)
            start = time.perf_counter()
            failures += len(wait_tick(candle_close_tick(engine, stored, now, job="bench")))
            seconds.append(time.perf_counter() - start)
            if (i + 1) % max(1, args.ticks // 10) == 0:
                print(f"  tick {i + 1}: {statistics.mean(seconds[-max(1, args.ticks // 10):]):.3f}"
                      " s/tick over the last 10%", flush=True)
    tenth = max(1, args.ticks // 10)
    first, last = statistics.mean(seconds[:tenth]), statistics.mean(seconds[-tenth:])
    result = {"assets": args.assets, "targets": 3, "shadows": shadows, "ticks": args.ticks,
              "train_s": round(train_s, 1), "replay_s": round(sum(seconds), 1),
              "first10_s_per_tick": round(first, 4), "last10_s_per_tick": round(last, 4),
              "last_vs_first": round(last / first, 3), "failures": failures,
              "year_extrapolated_min": round(8760 * statistics.mean(seconds) / 60, 1)}
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
