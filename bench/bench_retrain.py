"""The default daily retrain: every (asset, target) of the packaged config trained with its
configured champion mode (``auto``: walk-forward selection among the installed families), in one
process, as the train tasks of one host run it. Reports the whole run, the cost per (asset,
target) and the family chosen, and how often features were computed vs reused (features depend
on the asset's candles only, so a run should compute them once per asset).

    python bench/bench_retrain.py [--assets 3] [--json out.json]

Nothing is asserted: machines are noisy.
"""

from __future__ import annotations

import argparse
import json
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
from signalcast.features import compute_features  # noqa: E402
from signalcast.lifecycle.train import train_model  # noqa: E402
from signalcast.pipeline.ingest import ingest_asset  # noqa: E402

DAYS = 400  # a year of candles in the training window (history_candles 8,760) plus warm-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assets", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    config = yaml.safe_load((ROOT / "signalcast/config/default.yaml").read_text())
    config["assets"] = config["assets"][:args.assets]
    config["data"]["source"] = "synthetic"
    tmp = Path(tempfile.mkdtemp(prefix="signalcast-retrain-"))
    (tmp / "c.yaml").write_text(yaml.safe_dump(config))
    db = f"sqlite:///{tmp / 'r.db'}"
    settings = load_settings(tmp / "c.yaml", database_url=db, broker_url=None,
                             telegram_token=None)
    engine = init_db(db)
    now = settings.data.start + timedelta(days=DAYS)
    with session_scope(engine) as session:
        for a in settings.assets:
            ingest_asset(session, settings, a.symbol, now)
    try:
        from signalcast.features.dataset import FEATURE_STATS
    except ImportError:  # before features were shared: computed once per (asset, target)
        FEATURE_STATS = None
    from signalcast.evaluation.selection import build_outcome_set  # noqa: F401 (warm imports)

    per: list[dict] = []
    started = time.perf_counter()
    for a in settings.assets:
        for t in settings.targets:
            t0 = time.perf_counter()
            version = train_model(engine, settings, a.symbol, t.key, settings.models.champion,
                                  now=now)
            per.append({"asset": a.symbol, "target": t.key, "family": version.family,
                        "seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(per[-1]), flush=True)
    total = time.perf_counter() - started
    from signalcast.db.candles import read_candles

    with session_scope(engine, readonly=True) as session:
        candles = read_candles(session, settings.assets[0].symbol, "1h",
                               limit=settings.training.history_candles)
    t0 = time.perf_counter()
    compute_features(candles, "1h")
    feature_s = time.perf_counter() - t0
    result = {"assets": len(settings.assets), "targets": len(settings.targets),
              "champion": settings.models.champion, "total_s": round(total, 1),
              "per_asset_target_s": round(total / len(per), 1),
              "features": dict(FEATURE_STATS) if FEATURE_STATS is not None else
              {"computed": len(per), "reused": 0, "counted": "by construction"},
              "one_feature_computation_s": round(feature_s, 3)}
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps({"result": result, "per": per}, indent=2))


if __name__ == "__main__":
    main()
