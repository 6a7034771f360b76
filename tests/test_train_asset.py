"""The scheduled retrain sends one task per asset, so an asset's features are computed once per
run by whichever train worker takes it (real worker processes on the real Redis)."""

from __future__ import annotations

import pytest
from sqlmodel import select

from signalcast.config import load_settings
from signalcast.config.runtime import set_settings
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import ModelVersion, TaskRun
from signalcast.scheduler.jobs import retrain_all
from signalcast.tasks.app import app, configure
from tests.conftest import seed_history, write_config
from tests.processes import signalcast_env, workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_scheduled_retrain_trains_each_asset_in_one_task_computing_its_features_once(
        tmp_path, sqlite_url, redis_url):
    config = write_config(tmp_path / "c.yaml")
    settings = load_settings(config, database_url=sqlite_url, broker_url=redis_url,
                             telegram_token=None)
    engine = init_db(sqlite_url)
    set_settings(settings)
    configure(settings)
    now = seed_history(engine, settings)
    with workers(signalcast_env(config, sqlite_url, redis_url), app, count=2,
                 log_dir=tmp_path, queues="train"):
        results = retrain_all(engine, settings, now)
        assert retrain_all(engine, settings, now) == []  # once per fire time
        outcomes = [r.get(timeout=300) for r in results]
    assets = [a.symbol for a in settings.assets]
    targets = [t.key for t in settings.targets]
    assert sorted(o["asset"] for o in outcomes) == sorted(assets)
    for outcome in outcomes:
        assert [v["target"] for v in outcome["versions"]] == targets
        # computed once for the asset (each worker process starts with an empty cache and
        # every asset has its own history), reused by the other target and by the folds
        assert outcome["features_computed"] == 1 and outcome["features_reused"] >= 1
    with session_scope(engine, readonly=True) as session:
        trained = {(v.asset, v.target) for v in session.exec(select(ModelVersion)).all()}
        runs = session.exec(select(TaskRun).where(TaskRun.name == "train_asset")).all()
    assert trained == {(a, t) for a in assets for t in targets}
    assert len(runs) == len(assets) and all(r.status == "done" for r in runs)
