"""Replay cost per tick, in process and through the Celery workers, as stored history grows.

An embedded deployment (SQLite file, the same ticks as ``signalcast replay``): N assets x the
default three targets, a lightgbm champion plus the given shadow families trained once at the
start, then hourly ticks (ingest -> predict | resolve, one drain) on a simulated clock over
stored synthetic candles, replayed side by side from copies of the same trained database:

- ``inprocess`` (``signalcast replay``, signalcast/ops/replay.py): each tick's pipeline steps
  run in this process, ``--ticks`` of them;
- ``workers`` (``signalcast replay --through-workers``): each tick published to an embedded
  Celery worker and waited for, ``--worker-ticks`` of them (the same first ticks; 0 skips it).

Per path: seconds per tick over the first and last 10% of its ticks, their ratio, the whole
replay's time and a year of hourly ticks extrapolated from it.

    python bench/bench_replay.py --assets 3 --ticks 3000 --worker-ticks 300 \
        --shadows xgboost,river     # results: bench/bench_replay_results.txt

``--learn-every 1,24`` runs the in-process path once per value of
``routing.learn_every_candles`` (online models learn at every tick, or in daily batches), each
from its own copy of the trained database, side by side.

``--processes 1,2`` runs the in-process path once per process count (``signalcast replay
--processes``: the assets split among worker processes, ticks in lockstep), side by side.

``--profile N`` instead runs N in-process ticks under cProfile and prints the top functions.
Figures go to stdout and, with --json, to a file. Nothing is asserted: machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import yaml
from sqlalchemy import func
from sqlmodel import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from signalcast.config import Settings, load_settings  # noqa: E402
from signalcast.db.engine import init_db, session_scope  # noqa: E402
from signalcast.db.tables import Prediction  # noqa: E402
from signalcast.lifecycle.train import train_model  # noqa: E402
from signalcast.ops.replay import ReplayRunner  # noqa: E402
from signalcast.ops.replay_parallel import ParallelReplay  # noqa: E402
from signalcast.pipeline.ingest import ingest_asset  # noqa: E402
from signalcast.scheduler.jobs import candle_close_tick  # noqa: E402
from signalcast.tasks.runner import task_runtime, wait_tick  # noqa: E402

HISTORY_DAYS = 400  # candles before the first tick (training reads up to 8,760 of them)


def config(assets: int, shadows: list[str], learn_every: int | None = None) -> dict:
    data = {
        "assets": [{"symbol": f"R{i}/USDT"} for i in range(assets)],
        "targets": [{"pct": p, "horizon": 72, "alert_threshold": 0.99}
                    for p in (0.01, 0.02, 0.05)],
        "models": {"champion": "lightgbm", "params": {"lightgbm": {"n_estimators": 100}}},
        "training": {"history_candles": 3000, "min_rows": 300},
        "data": {"source": "synthetic", "seed": 7},
        "alerts": {"console": False},
    }
    data["routing"] = {"default": {"shadows": shadows}} if shadows else {}
    if learn_every is not None:
        data["routing"]["learn_every_candles"] = learn_every
    return data


def stored_settings(config_path: Path, db_url: str) -> Settings:
    settings = load_settings(config_path, database_url=db_url, broker_url=None,
                             telegram_token=None)
    return Settings(settings.file.model_copy(update={"data": settings.file.data.model_copy(
        update={"source": "stored"})}), settings.env, settings.source)


# This machine's Postgres runs with autovacuum off, so a replay's fresh tables keep the planner
# statistics of their empty copy (a 1-row estimate put a nested loop under the pending-outcome
# query: 0.14 -> 0.52 s per tick within 240 ticks). A deployment's autovacuum analyzes a table
# after 10% of its rows changed; the bench stands in for it, untimed, every ANALYZE_EVERY ticks.
ANALYZE_EVERY = 50


def analyze(engine) -> None:
    from sqlalchemy import text

    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


def replay(path: str, config_path: Path, db_url: str, t0, ticks: int,
           processes: int = 1) -> dict:
    """``ticks`` ticks from ``t0`` through ``path`` on the database at ``db_url`` (in process:
    in ``processes`` processes, ``signalcast replay --processes``)."""
    settings = stored_settings(config_path, db_url)
    engine = init_db(db_url)
    seconds: list[float] = []
    failures = 0
    tenth = max(1, ticks // 10)

    def run(tick) -> None:
        nonlocal failures
        for i in range(ticks):
            now = t0 + timedelta(hours=i, seconds=settings.schedule.predict_delay_seconds)
            start = time.perf_counter()
            failures += tick(now)
            seconds.append(time.perf_counter() - start)
            if i % ANALYZE_EVERY == 0 and engine.dialect.name == "postgresql":
                analyze(engine)
            if (i + 1) % tenth == 0:
                print(f"  {path} tick {i + 1}: {statistics.mean(seconds[-tenth:]):.3f}"
                      f" s/tick over the last 10%, {sum(seconds):.0f} s so far", flush=True)

    if path == "workers":
        with task_runtime(settings):
            run(lambda now: len(wait_tick(candle_close_tick(engine, settings, now,
                                                            job="bench"))))
    elif processes > 1:
        with ParallelReplay(engine, settings, processes=processes, job="bench") as runner:
            run(lambda now: len(runner.tick(now).failures))
    else:
        runner = ReplayRunner(engine, settings, job="bench")
        run(lambda now: len(runner.tick(now).failures))
    with session_scope(engine, readonly=True) as session:  # a replay of fallbacks measures
        served, fallbacks = session.exec(select(  # the wrong thing: say how many there were
            func.count(), func.count(Prediction.fallback)).where(Prediction.served)).one()
    engine.dispose()
    first, last = statistics.mean(seconds[:tenth]), statistics.mean(seconds[-tenth:])
    return {"path": path, "ticks": ticks, "replay_s": round(sum(seconds), 1),
            "s_per_tick": round(statistics.mean(seconds), 4),
            "first10_s_per_tick": round(first, 4), "last10_s_per_tick": round(last, 4),
            "last_vs_first": round(last / first, 3), "failures": failures,
            "served": served, "fallbacks": fallbacks,
            "year_extrapolated_min": round(8760 * statistics.mean(seconds) / 60, 1),
            "seconds": seconds}


class Store:
    """Where the trained database lives and how a path gets its own copy: SQLite files in
    ``tmp`` (the default), or Postgres databases next to ``postgres`` (``--postgres URL``:
    copies are ``CREATE DATABASE ... TEMPLATE``; the artifact key comes from the environment,
    as a Postgres deployment's does)."""

    def __init__(self, tmp: Path, postgres: str | None) -> None:
        self.tmp, self.postgres = tmp, postgres
        if postgres:
            import os

            os.environ.setdefault("SIGNALCAST_ARTIFACT_KEY", "bench-replay-" + "0" * 48)
            self._admin("signalcast_bench_trained")
            self.trained_url = self._url("signalcast_bench_trained")
        else:
            self.trained_url = f"sqlite:///{tmp / 'trained.db'}"

    def _url(self, name: str) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.postgres).set(database=name).render_as_string(hide_password=False)

    def _admin(self, name: str, template: str | None = None) -> None:
        from sqlalchemy import create_engine, text

        admin = create_engine(self.postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {name}"
                              + (f" TEMPLATE {template}" if template else "")))
        admin.dispose()

    def copy(self, name: str) -> str:
        """A copy of the trained database for one path (SQLite: with its local artifact key;
        without it every model of the copy fails authentication and the replay measures
        fallbacks)."""
        if self.postgres:
            from signalcast.db.engine import dispose_engines

            dispose_engines()  # a template must have no open connections
            self._admin(f"signalcast_bench_{name}", "signalcast_bench_trained")
            return self._url(f"signalcast_bench_{name}")
        trained, db = self.tmp / "trained.db", self.tmp / f"{name}.db"
        shutil.copyfile(trained, db)
        key = trained.with_name(trained.name + ".artifact-key")
        if key.exists():
            shutil.copyfile(key, db.with_name(db.name + ".artifact-key"))
        return f"sqlite:///{db}"


def profile(config_path: Path, db: str, t0, ticks: int) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    result = replay("inprocess", config_path, db, t0, ticks)
    profiler.disable()
    result.pop("seconds")
    print(json.dumps(result))
    out = Path(tempfile.gettempdir()) / "bench_replay.prof"
    profiler.dump_stats(out)
    print(f"profile saved to {out}")
    stats = pstats.Stats(profiler).sort_stats("cumulative")
    stats.print_stats(45)
    stats.sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assets", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=2000, help="in-process ticks")
    parser.add_argument("--worker-ticks", type=int, default=200,
                        help="ticks through the Celery workers (0: skip that path)")
    parser.add_argument("--shadows", default="xgboost,river")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="profile N in-process ticks instead")
    parser.add_argument("--learn-every", default="", metavar="N,M",
                        help="in-process runs per routing.learn_every_candles value")
    parser.add_argument("--processes", default="", metavar="N,M",
                        help="run the in-process path once per process count, side by side")
    parser.add_argument("--postgres", metavar="URL",
                        help="replay on Postgres databases made next to this one (e.g. "
                             "postgresql://postgres@127.0.0.1:5432/test) instead of SQLite")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    learn_every = [int(n) for n in args.learn_every.split(",") if n]
    processes = [int(n) for n in args.processes.split(",") if n]
    shadows = [s for s in args.shadows.split(",") if s]

    tmp = Path(tempfile.mkdtemp(prefix="signalcast-replay-"))
    config_path = tmp / "replay.yaml"
    config_path.write_text(yaml.safe_dump(config(args.assets, shadows)))
    store = Store(tmp, args.postgres)
    db_url = store.trained_url
    settings = load_settings(config_path, database_url=db_url, broker_url=None,
                             telegram_token=None)
    engine = init_db(db_url)
    t0 = settings.data.start + timedelta(days=HISTORY_DAYS)
    longest = max(args.ticks, args.worker_ticks, args.profile)
    end = t0 + timedelta(hours=longest + 1)
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
    engine.dispose()
    if args.profile:
        profile(config_path, store.copy("profile"), t0, args.profile)
        return
    result = {"assets": args.assets, "targets": 3, "shadows": shadows,
              "train_s": round(train_s, 1), "paths": {}}
    seconds: dict[str, list[float]] = {}
    # side-by-side variants of the in-process path: process counts, learning cadences
    variants = [(f"inprocess_{n}_processes", config_path, n) for n in processes]
    for n in learn_every:
        name = f"inprocess_learn_every_{n}"
        variants.append((name, tmp / f"{name}.yaml", 1))
        variants[-1][1].write_text(yaml.safe_dump(config(args.assets, shadows, n)))
    if variants:
        for name, path_config, n in variants:
            result["paths"][name] = replay("inprocess", path_config, store.copy(name), t0,
                                           args.ticks, n)
            result["paths"][name].pop("seconds")
            print(json.dumps({name: result["paths"][name]}), flush=True)
        print(json.dumps(result))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return
    for path, ticks in (("inprocess", args.ticks), ("workers", args.worker_ticks)):
        if ticks:
            db = store.copy(path)
            result["paths"][path] = replay(path, config_path, db, t0, ticks)
            seconds[path] = result["paths"][path].pop("seconds")
            print(json.dumps(result["paths"][path]), flush=True)
    if len(seconds) == 2:  # like for like: the same first ticks of both
        n = min(map(len, seconds.values()))
        same = {path: statistics.mean(s[:n]) for path, s in seconds.items()}
        result["same_first_ticks"] = {
            "ticks": n, **{f"{path}_s_per_tick": round(v, 4) for path, v in same.items()},
            "workers_vs_inprocess": round(same["workers"] / same["inprocess"], 2)}
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
