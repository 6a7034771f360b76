"""Predict-tick throughput with 1 and 2 worker processes, against the engine's ceiling.

For each worker count W (separate `signalcast worker -Q predict -c 1` processes on one Redis and
one Postgres database) it measures:
  * the raw Celery no-op round trip (`signalcast.ping`, results collected): the ceiling;
  * predict-tick throughput: asset ticks per second, each tick predicting every target with the
    champion (and the configured shadow challengers, when routing is configured);
  * latency from a tick's enqueue to its last prediction stored (median, p95).

    python bench/bench_scaling.py --assets 8 --ticks 200 [--shadows xgboost,river]

A capacity run (one candle close of many assets; peak RSS of each worker's pool process):

    python bench/bench_scaling.py --assets 100 --counts 2 --noops 200 --ticks 200 --rounds 5

Figures go to stdout and, with --json, to a file. Nothing here is asserted: machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import yaml
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from signalcast.config import load_settings  # noqa: E402
from signalcast.config.runtime import set_settings  # noqa: E402
from signalcast.db.engine import init_db, session_scope  # noqa: E402
from signalcast.lifecycle.train import train_model  # noqa: E402
from signalcast.pipeline.ingest import ingest_asset  # noqa: E402
from signalcast.tasks import tasks  # noqa: E402
from signalcast.tasks.app import app, configure  # noqa: E402
from tests.processes import signalcast_env, workers  # noqa: E402

ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BROKER = "redis://127.0.0.1:6379/12"


def make_database() -> str:
    name = f"signalcast_bench_{uuid.uuid4().hex[:8]}"
    with create_engine(ADMIN, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return ADMIN.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with create_engine(ADMIN, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def config(assets: int, shadows: list[str]) -> dict:
    data = {
        "assets": [{"symbol": f"A{i}/USDT"} for i in range(assets)],
        "targets": [{"pct": p, "horizon": 72, "alert_threshold": 0.99} for p in (0.01, 0.02, 0.05)],
        "models": {"champion": "lightgbm", "params": {"lightgbm": {"n_estimators": 100}}},
        "training": {"history_candles": 3000, "min_rows": 300},
        "data": {"source": "synthetic", "seed": 5},
        "alerts": {"console": False},
    }
    if shadows:
        data["routing"] = {"default": {"shadows": shadows}}
    return data


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def raw_noop_rate(n: int) -> float:
    start = time.perf_counter()
    results = [tasks.ping.apply_async(queue="predict") for _ in range(n)]
    for r in results:
        r.get(timeout=120)
    return n / (time.perf_counter() - start)


def tick_throughput(symbols: list[str], candles: list, n_ticks: int) -> tuple[float, int]:
    jobs = [(symbols[i % len(symbols)], candles[(i // len(symbols)) % len(candles)])
            for i in range(n_ticks)]
    start = time.perf_counter()
    results = [tasks.predict.delay(a, c.isoformat()) for a, c in jobs]
    served = sum(r.get(timeout=300)["predictions"] for r in results)
    return n_ticks / (time.perf_counter() - start), served


def peak_rss_mb(procs) -> list[float]:
    """Peak RSS (VmHWM, MiB) of each worker's pool processes (the prefork children)."""
    out = []
    for proc in procs:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        for pid in children or [str(proc.pid)]:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out.append(round(int(line.split()[1]) / 1024, 1))
    return out


def tick_latency(symbols: list[str], candles: list, rounds: int) -> list[float]:
    """Seconds from enqueueing one tick (all assets) to its last prediction stored."""
    out = []
    for candle in candles[:rounds]:
        start = time.perf_counter()
        results = [tasks.predict.delay(a, candle.isoformat()) for a in symbols]
        for r in results:
            r.get(timeout=120)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assets", type=int, default=8)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--noops", type=int, default=2000)
    parser.add_argument("--shadows", default="", help="comma-separated shadow families")
    parser.add_argument("--counts", default="1,2", help="worker process counts to run")
    parser.add_argument("--rounds", type=int, default=15, help="ticks of all assets timed")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    shadows = [s for s in args.shadows.split(",") if s]

    tmp = Path(tempfile.mkdtemp(prefix="signalcast-bench-"))
    config_path = tmp / "bench.yaml"
    config_path.write_text(yaml.safe_dump(config(args.assets, shadows)))
    db_url = make_database()
    try:
        import redis

        redis.Redis.from_url(BROKER).flushdb()
        settings = load_settings(config_path, database_url=db_url, broker_url=BROKER,
                                 telegram_token=None)
        set_settings(settings)
        configure(settings)
        engine = init_db(db_url)
        now = settings.data.start + timedelta(days=150)
        print(f"seeding {args.assets} assets x 150 days, training champions"
              f"{' + shadows ' + ','.join(shadows) if shadows else ''} ...", flush=True)
        with session_scope(engine) as session:
            for a in settings.assets:
                ingest_asset(session, settings, a.symbol, now)
        for a in settings.assets:
            for t in settings.targets:
                for family in ["lightgbm", *shadows]:
                    train_model(engine, settings, a.symbol, t.key, family, now=now)
        symbols = [a.symbol for a in settings.assets]
        step = timedelta(hours=1)
        last = (now - step).replace(minute=0, second=0, microsecond=0)
        per_round = max(1, args.ticks // len(symbols))
        env = signalcast_env(config_path, db_url, BROKER)
        figures = {"assets": args.assets, "targets": len(settings.targets),
                   "shadows": shadows, "runs": []}
        offset = 0
        for count in counts:
            with workers(env, app, count=count, queues="predict") as procs:
                tasks.ping.apply_async(queue="predict").get(timeout=60)  # warm up
                noop = raw_noop_rate(args.noops)
                candles = [last - (offset + i) * step for i in range(per_round + 20)]
                offset += per_round + 20
                tick_throughput(symbols, candles[per_round:per_round + 2], len(symbols) * 2)
                rate, served = tick_throughput(symbols, candles[:per_round],
                                               per_round * len(symbols))
                latency = tick_latency(symbols, candles[per_round + 2:], args.rounds)
                rss = peak_rss_mb(procs)
            run = {"workers": count, "noop_per_s": round(noop, 1),
                   "ticks_per_s": round(rate, 1), "ticks": per_round * len(symbols),
                   "predictions_served": served,
                   "tick_to_stored_median_ms": round(statistics.median(latency) * 1000, 1),
                   "tick_to_stored_p95_ms": round(pct(latency, 0.95) * 1000, 1),
                   "peak_rss_mb": rss}
            figures["runs"].append(run)
            print(json.dumps(run), flush=True)
        one = figures["runs"][0]
        figures[f"tick_vs_noop_{counts[0]}w"] = round(one["ticks_per_s"] / one["noop_per_s"], 3)
        if len(counts) > 1:
            two = figures["runs"][1]
            figures[f"speedup_{counts[1]}w"] = round(two["ticks_per_s"] / one["ticks_per_s"], 2)
        print(json.dumps({k: v for k, v in figures.items() if k != "runs"}))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        from signalcast.db.engine import dispose_engines

        dispose_engines()
        drop_database(db_url)


if __name__ == "__main__":
    main()
