"""Wall time and peak RSS to train every registered family for every (asset, target).

Two runs on the same data (the packaged default config: 3 assets x 3 targets, two years of hourly
candles in the training window):
  * one process: `signalcast train --all -f ...` with the embedded worker;
  * the train queue with 2 worker processes: `signalcast worker -Q train -c 1` twice on Redis,
    the same command enqueueing.

    python bench/bench_train_all.py [--families lightgbm,xgboost] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from signalcast.config import load_settings  # noqa: E402
from signalcast.db.engine import init_db, session_scope  # noqa: E402
from signalcast.models.registry import families  # noqa: E402
from signalcast.pipeline.ingest import ingest_asset  # noqa: E402

BROKER = "redis://127.0.0.1:6379/13"
DAYS = 2 * 365 + 30  # two years in the training window plus warm-up


def peak_rss_mb(pid: int) -> float:
    """Peak RSS of a running process (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", default=",".join(
        f for f in sorted(families()) if not f.endswith("_ensemble")))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    chosen = args.families.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="signalcast-train-bench-"))
    config = yaml.safe_load((ROOT / "signalcast/config/default.yaml").read_text())
    config["training"]["history_candles"] = 17520
    config["data"] = {"source": "stored", "seed": 7, "start": "2023-01-01T00:00:00Z"}
    config_path = tmp / "train.yaml"
    config_path.write_text(yaml.safe_dump(config))
    figures: dict = {"families": chosen, "models": 9 * len(chosen), "runs": {}}

    for mode in ("one process", "2 train workers"):
        db = f"sqlite:///{tmp / (mode.replace(' ', '_') + '.db')}"
        synthetic = load_settings(config_path, database_url=db, broker_url=None)
        synthetic = type(synthetic)(synthetic.file.model_copy(update={
            "data": synthetic.file.data.model_copy(update={"source": "synthetic"})}),
            synthetic.env, synthetic.source)
        engine = init_db(db)
        now = synthetic.data.start + timedelta(days=DAYS)
        with session_scope(engine) as session:
            for a in synthetic.assets:
                ingest_asset(session, synthetic, a.symbol, now)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALCAST_")}
        env.update(SIGNALCAST_CONFIG=str(config_path), SIGNALCAST_DATABASE_URL=db,
                   OMP_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "signalcast.cli", "train", "--all", "--at", now.isoformat()]
        for f in chosen:
            cmd += ["-f", f]
        if mode == "one process":
            wall = run(cmd, env)
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            figures["runs"][mode] = {"wall_s": round(wall, 1), "peak_rss_mb": round(rss)}
        else:
            import redis

            redis.Redis.from_url(BROKER).flushdb()
            env["SIGNALCAST_BROKER_URL"] = BROKER
            workers = [subprocess.Popen(
                [sys.executable, "-m", "signalcast.cli", "worker", "-Q", "train", "-c", "1",
                 "-n", f"bench{i}@%h", "--loglevel", "WARNING"], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(2)]
            time.sleep(8)
            try:
                peaks: dict[int, float] = {}
                start = time.perf_counter()
                proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
                while proc.poll() is None:
                    for w in workers:
                        for child in subprocess.run(["pgrep", "-P", str(w.pid)],
                                                    capture_output=True, text=True
                                                    ).stdout.split():
                            try:
                                peaks[int(child)] = max(peaks.get(int(child), 0),
                                                        peak_rss_mb(int(child)))
                            except FileNotFoundError:
                                pass
                    time.sleep(0.5)
                wall = time.perf_counter() - start
            finally:
                for w in workers:
                    w.terminate()
                    w.wait(60)
            figures["runs"][mode] = {"wall_s": round(wall, 1),
                                     "peak_rss_mb_per_worker_child": round(max(peaks.values()))}
        print(mode, json.dumps(figures["runs"][mode]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
