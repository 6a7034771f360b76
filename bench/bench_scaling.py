"""Predict-tick throughput with 1 and 2 worker processes, against the engine's ceiling.

For each worker count W (separate `signalcast worker -Q predict -c 1` processes on one Redis and
one Postgres database) it measures:
  * the raw Celery no-op round trip (`signalcast.ping`, results collected): the ceiling;
  * predict-tick throughput: asset ticks per second, each tick predicting every target with the
    champion (and the configured shadow challengers, when routing is configured);
  * latency from a tick's enqueue to its last prediction stored (median, p95);
  * the model floor: features and every model of an asset tick, timed in this process
    (``model_floor_ms``), and what it bounds: one worker cannot tick faster than one per floor,
    so ``model_floor_vs_noop`` is the highest tick/no-op ratio these models allow.

No-ops and ticks run in alternating rounds (``--interleave``) and their rates are counted on the
workers' side (first to last completion, from the result backend): measured one after the
other, a no-op batch ran under another load than the ticks that followed it (this machine is
shared), and its client-side rate counted this process publishing and collecting as much as
the workers, so the no-op "ceiling" came out below the predict ticks it bounds. The client-side
rates are reported beside them.

    python bench/bench_scaling.py --assets 8 --ticks 200 [--shadows xgboost,river]

Before the workers, ``hot_path.py`` times a batched tick of every asset in this process (and
its candle read and features), alternately for this checkout and ``--code-before``.

``--batch 1,6`` runs each worker count with one predict task per asset and with one per 6
assets (``predict_assets``, what ``schedule.tick_batch_assets: 6`` publishes), side by side;
rates count asset ticks. ``--code-before CHECKOUT`` runs every variant a second time, right
after it, with workers importing signalcast from CHECKOUT (``git worktree add /tmp/before
<commit>``): a before/after in one run, on this machine whose speed drifts between runs.
``--recycle 200`` adds, for each worker count, a run whose pool
child is replaced every 200 tasks (``workers.max_tasks_per_child``, the old default).

A capacity run (one candle close of many assets; peak RSS of each worker's pool process):

    python bench/bench_scaling.py --assets 100 --counts 2 --noops 200 --ticks 200 --rounds 5

Figures go to stdout and, with --json, to a file. Nothing here is asserted: machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
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

# this machine's Postgres runs with autovacuum off: without it the planner keeps the statistics
# of the empty tables (the recorded-predictions lookup: 3 ms against 0.1 ms); ANALYZE, untimed,
# before each timed round stands in for a deployment's autovacuum (as in bench_replay)
from bench_replay import analyze  # noqa: E402

from signalcast.config import load_settings  # noqa: E402
from signalcast.config.runtime import set_settings  # noqa: E402
from signalcast.db.engine import init_db, session_scope  # noqa: E402
from signalcast.lifecycle.train import train_model  # noqa: E402
from signalcast.pipeline.ingest import ingest_asset  # noqa: E402
from signalcast.pipeline.predict import served_model  # noqa: E402
from signalcast.tasks import tasks  # noqa: E402
from signalcast.tasks.app import app, configure  # noqa: E402
from tests.processes import signalcast_env, workers  # noqa: E402

ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# a Postgres deployment needs one artifact key in every process (the workers inherit it)
os.environ.setdefault("SIGNALCAST_ARTIFACT_KEY", "signalcast-bench-" + "0" * 48)
BROKER = os.environ.get("SIGNALCAST_BENCH_BROKER", "redis://127.0.0.1:6379/12")


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


def worker_rate(results, sizes: list[int] | None = None) -> float:
    """Tasks (or, with ``sizes``, the asset ticks they carry) per second the workers finished,
    from the first result's completion to the last (the result backend's ``date_done``): what
    the client costs to publish and collect is left out, so a no-op batch measures the
    workers' ceiling, not this process."""
    done = sorted(zip((r.date_done for r in results), sizes or [1] * len(results),
                      strict=True))
    span = (done[-1][0] - done[0][0]).total_seconds()
    return sum(n for _, n in done[1:]) / span if span > 0 else float("nan")


def raw_noop_rate(n: int) -> tuple[float, float]:
    """(client rate, workers' rate) of ``n`` no-op round trips."""
    start = time.perf_counter()
    results = [tasks.ping.apply_async(queue="predict") for _ in range(n)]
    for r in results:
        r.get(timeout=120)
    return n / (time.perf_counter() - start), worker_rate(results)


def publish_tick(symbols: list[str], candle, batch: int) -> tuple[list, list[int]]:
    """One candle's predictions of every asset, as the scheduler publishes them: a
    ``predict`` per asset, or a ``predict_assets`` per ``batch`` assets. (results, sizes)"""
    if batch == 1:
        return [tasks.predict.delay(a, candle.isoformat()) for a in symbols], [1] * len(symbols)
    chunks = [symbols[i:i + batch] for i in range(0, len(symbols), batch)]
    return ([tasks.predict_assets.delay(c, candle.isoformat()) for c in chunks],
            [len(c) for c in chunks])


def tick_throughput(symbols: list[str], candles: list, batch: int = 1
                    ) -> tuple[float, float, int]:
    """(client rate, workers' rate, predictions served) of every asset's tick at ``candles``
    (asset ticks per second)."""
    start = time.perf_counter()
    results, sizes = [], []
    for candle in candles:
        published, n = publish_tick(symbols, candle, batch)
        results += published
        sizes += n
    served = sum(r.get(timeout=300)["predictions"] for r in results)
    return (sum(sizes) / (time.perf_counter() - start), worker_rate(results, sizes), served)


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


def tick_latency(symbols: list[str], candles: list, rounds: int, batch: int = 1
                 ) -> list[float]:
    """Seconds from enqueueing one tick (all assets) to its last prediction stored."""
    out = []
    for candle in candles[:rounds]:
        start = time.perf_counter()
        results, _ = publish_tick(symbols, candle, batch)
        for r in results:
            r.get(timeout=120)
        out.append(time.perf_counter() - start)
    return out


def model_floor_ms(engine, settings, symbols: list[str], candles: list) -> float:
    """Median milliseconds, in this process, of what an asset tick cannot do without: its
    features and every served and shadow model on them (models loaded and verified before).
    One worker process cannot tick faster than one per this, whatever the engine costs."""
    from sqlmodel import select

    from signalcast.db.candles import read_candles
    from signalcast.db.tables import ModelVersion
    from signalcast.features import MAX_LOOKBACK, latest_features
    from signalcast.routing.router import model_output

    keys, times = settings.artifact_keys, []
    with session_scope(engine, readonly=True) as session:
        for symbol in symbols:
            cfg = settings.asset(symbol)
            versions = session.exec(select(ModelVersion).where(
                ModelVersion.asset == symbol, ModelVersion.role != "retired")).all()
            models = [served_model(v, keys) for v in versions]
            for candle in candles:
                frame = read_candles(session, symbol, cfg.timeframe, end=candle,
                                     limit=MAX_LOOKBACK + 1)
                start = time.perf_counter()
                x = latest_features(frame, cfg.timeframe).reshape(1, -1)
                for model in models:
                    model_output(model, x)
                times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def hot_path_ms(config_path: Path, db_url: str, first, before: Path | None,
                rounds: int = 3, count: int = 40) -> dict:
    """``hot_path.py`` (a batched tick of every asset in one process, its candle read and its
    features) for this checkout and, alternately, ``before``: medians per checkout of each
    figure over ``rounds`` runs of ``count`` fresh candles each."""
    import subprocess

    codes = {"now": ROOT, **({"before": before.resolve()} if before else {})}
    runs: dict[str, list[dict]] = {name: [] for name in codes}
    for r in range(rounds):
        for i, (name, code) in enumerate(codes.items()):
            start = first - (r * len(codes) + i) * count * timedelta(hours=1)  # fresh ones
            out = subprocess.run(
                [sys.executable, str(ROOT / "bench" / "hot_path.py"), str(config_path), db_url,
                 start.isoformat(), str(count)], capture_output=True, text=True, check=True,
                env={**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"})
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    keys = ("batch_tick_ms_per_asset", "candle_read_ms_per_asset", "features_ms")
    return {name: {k: round(statistics.median(run[k] for run in rs), 3) for k in keys}
            for name, rs in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assets", type=int, default=8)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--noops", type=int, default=2000)
    parser.add_argument("--shadows", default="", help="comma-separated shadow families")
    parser.add_argument("--counts", default="1,2", help="worker process counts to run")
    parser.add_argument("--rounds", type=int, default=15, help="ticks of all assets timed")
    parser.add_argument("--interleave", type=int, default=4,
                        help="alternating rounds of no-ops and ticks per worker count")
    parser.add_argument("--batch", default="1",
                        help="comma-separated assets per predict task (schedule."
                             "tick_batch_assets), each run beside the others")
    parser.add_argument("--recycle", type=int, default=0, metavar="N",
                        help="also run each worker count with workers.max_tasks_per_child N "
                             "(a pool child replaced every N tasks), beside the default")
    parser.add_argument("--code-before", type=Path, metavar="CHECKOUT",
                        help="also run each variant with workers that import signalcast from "
                             "CHECKOUT (e.g. a git worktree of the code before a change), "
                             "beside it in the same run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    batches = [int(b) for b in args.batch.split(",")]
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
        floor = model_floor_ms(engine, settings, symbols, [last - i * step for i in range(20)])
        figures = {"assets": args.assets, "targets": len(settings.targets),
                   "shadows": shadows, "model_floor_ms": round(floor, 2), "runs": []}
        figures["hot_path"] = hot_path_ms(config_path, db_url, last - 2000 * step,
                                          args.code_before)
        print(json.dumps({"hot_path": figures["hot_path"]}), flush=True)
        variants = []
        for b in batches:
            name = "default" if b == 1 else f"batch={b}"
            variants.append((name, env, b))
            if args.code_before:  # the same, its workers importing the older checkout
                variants.append((f"before {name}", {**env, "PYTHONPATH": str(
                    args.code_before.resolve())}, b))
        if args.recycle:
            recycled = tmp / "recycle.yaml"
            recycled.write_text(yaml.safe_dump({**config(args.assets, shadows), "workers": {
                "max_tasks_per_child": args.recycle}}))
            variants.append((f"max_tasks_per_child={args.recycle}",
                             signalcast_env(recycled, db_url, BROKER), 1))
        offset = 0
        for count, (variant, variant_env, batch) in ((c, v) for c in counts for v in variants):
            with workers(variant_env, app, count=count, queues="predict") as procs:
                tasks.ping.apply_async(queue="predict").get(timeout=60)  # warm up
                candles = [last - (offset + i) * step for i in range(per_round + 20)]
                offset += per_round + 20
                tick_throughput(symbols, candles[per_round:per_round + 2], batch)
                # No-ops and ticks in alternating rounds, so a load that changes during the
                # run (this machine is shared) weighs on both alike; the ratio is the median
                # of each round's ticks / no-ops, measured on the workers' side.
                noops, ticks, served = [], [], 0
                parts = max(1, min(args.interleave, per_round))
                for k in range(parts):
                    analyze(engine)
                    noops.append(raw_noop_rate(max(1, args.noops // parts)))
                    chunk = candles[k * per_round // parts:(k + 1) * per_round // parts]
                    client, workers_side, n = tick_throughput(symbols, chunk, batch)
                    ticks.append((client, workers_side))
                    served += n
                latency = tick_latency(symbols, candles[per_round + 2:], args.rounds, batch)
                rss = peak_rss_mb(procs)
            med = statistics.median
            run = {"workers": count, "variant": variant,
                   "noop_per_s": round(med(w for _, w in noops), 1),
                   "ticks_per_s": round(med(w for _, w in ticks), 1),
                   "tick_vs_noop": round(med(t[1] / n[1] for t, n in zip(ticks, noops,
                                                                          strict=True)), 3),
                   "noop_client_per_s": round(med(c for c, _ in noops), 1),
                   "ticks_client_per_s": round(med(c for c, _ in ticks), 1),
                   "rounds": parts, "ticks": per_round * len(symbols),
                   "predictions_served": served,
                   "tick_to_stored_median_ms": round(statistics.median(latency) * 1000, 1),
                   "tick_to_stored_p95_ms": round(pct(latency, 0.95) * 1000, 1),
                   "peak_rss_mb": rss}
            figures["runs"].append(run)
            print(json.dumps(run), flush=True)
        for variant, _, _ in variants:
            runs = [r for r in figures["runs"] if r["variant"] == variant]
            tag = "" if variant == "default" else "_" + variant.replace(" ", "_")
            figures[f"tick_vs_noop_{counts[0]}w{tag}"] = runs[0]["tick_vs_noop"]
            # the most a tick of these models could reach against the no-op on one worker
            figures[f"model_floor_vs_noop_{counts[0]}w{tag}"] = round(
                1000 / floor / runs[0]["noop_per_s"], 3)
            figures[f"ticks_per_s_{counts[0]}w{tag}"] = runs[0]["ticks_per_s"]
            if len(runs) > 1:
                figures[f"speedup_{counts[1]}w{tag}"] = round(
                    runs[1]["ticks_per_s"] / runs[0]["ticks_per_s"], 2)
        print(json.dumps({k: v for k, v in figures.items() if k != "runs"}))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        from signalcast.db.engine import dispose_engines

        dispose_engines()
        drop_database(db_url)


if __name__ == "__main__":
    main()
