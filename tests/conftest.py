"""Shared fixtures: small settings, SQLite and Postgres databases, a clean Redis database.

Postgres and Redis are real servers (127.0.0.1:5432 and :6379; `.ci/run` starts them). A test
that needs one and cannot reach it fails with the reason: it never skips itself.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

from signalcast.config import Settings, load_settings
from signalcast.db.engine import dispose_engines, init_db

POSTGRES_ADMIN_URL = os.environ.get(
    "SIGNALCAST_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("SIGNALCAST_TEST_REDIS", "redis://127.0.0.1:6379/11")

# A deployment on Postgres (or on several hosts) configures one artifact key for every process;
# the tests are such a deployment, and the worker processes they start inherit it. Tests of the
# key-less defaults remove it with monkeypatch.
os.environ.setdefault("SIGNALCAST_ARTIFACT_KEY", "signalcast-tests-" + "0" * 48)

SMALL_CONFIG: dict[str, Any] = {
    "assets": [{"symbol": "BTC/USDT", "timeframe": "1h"}, {"symbol": "ETH/USDT"}],
    "targets": [
        {"pct": 0.01, "horizon": 24, "alert_threshold": 0.6},
        {"pct": 0.02, "horizon": 48, "alert_threshold": 0.6},
    ],
    "models": {"champion": "lightgbm", "params": {"lightgbm": {"n_estimators": 30}}},
    "training": {"history_candles": 3000, "min_rows": 300},
    "data": {"source": "synthetic", "seed": 11, "start": "2023-01-01T00:00:00Z"},
}


def write_config(path: Path, overrides: dict[str, Any] | None = None) -> Path:
    config = {**SMALL_CONFIG, **(overrides or {})}
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path / "signalcast.yaml")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'signalcast.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty Postgres database, dropped afterwards."""
    name = f"signalcast_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # make the missing service obvious instead of skipping
        pytest.fail(f"Postgres at {POSTGRES_ADMIN_URL} is not reachable ({exc}); "
                    "start it (see .ci/run)")
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    dispose_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Runs the test once on SQLite and once on Postgres."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'signalcast.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture
def make_settings(config_path: Path):
    """``make_settings(database_url, **env)`` -> validated Settings on the small config."""

    def make(database_url: str, **env: Any) -> Settings:
        env.setdefault("broker_url", None)
        env.setdefault("telegram_token", None)
        return load_settings(config_path, database_url=database_url, **env)

    return make


@pytest.fixture
def engine_and_settings(db_url: str, make_settings):
    """An upgraded database (SQLite or Postgres) and settings pointing at it."""
    settings = make_settings(db_url)
    return init_db(db_url), settings


@pytest.fixture
def redis_url() -> str:
    """The test Redis database, emptied first. Fails (no skip) when Redis is down."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({exc}); start it (see .ci/run)")
    return REDIS_URL


HISTORY_START_DAYS = 150  # synthetic history before the first test tick (3600 hourly candles)


def seed_history(engine, settings: Settings, days: int = HISTORY_START_DAYS):
    """Store ``days`` of synthetic candles for every asset; returns the simulated 'now'."""
    from datetime import timedelta

    from signalcast.db.engine import session_scope
    from signalcast.pipeline.ingest import ingest_asset

    now = settings.data.start + timedelta(days=days)
    with session_scope(engine) as session:
        for asset in settings.assets:
            ingest_asset(session, settings, asset.symbol, now)
    return now


_SERVICE_FIXTURES = {"postgres_url", "redis_url"}


def _needs_service(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("db_url") == "postgres":
        return True
    return bool(_SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that talks to Postgres or Redis (through their fixtures, or the Postgres half of
    ``db_url``) is an integration test wherever it lives, so the fast suite
    (``-m "not integration and not slow"``) needs SQLite only; an ``isolated`` test is slow."""
    for item in items:
        if _needs_service(item):
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("isolated") is not None:
            item.add_marker(pytest.mark.slow)  # a pytest process of its own: seconds of imports


# -- tests that need a process of their own ------------------------------------------------------
# A few end-to-end tests run the embedded pipeline (an in-process Celery worker, kombu's
# in-memory broker, per-process caches) and passed alone but not after hundreds of other tests
# in the same process. Marked `isolated`, such a test runs in a fresh pytest process of its own
# (its fixtures too) and its outcome is reported here; the same test runs in-process inside that
# child (SIGNALCAST_ISOLATED_CHILD).

_ISOLATED_CHILD = "SIGNALCAST_ISOLATED_CHILD"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    if item.get_closest_marker("isolated") is None or os.environ.get(_ISOLATED_CHILD):
        return None
    import subprocess
    import sys
    import time

    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header",
         "-o", "addopts=--strict-markers", item.nodeid],
        env={**os.environ, _ISOLATED_CHILD: "1"}, cwd=str(item.config.rootpath),
        capture_output=True, text=True, timeout=900)
    outcome = "passed" if done.returncode == 0 else "failed"
    longrepr = None if outcome == "passed" else (
        f"{item.nodeid} failed in its own process (exit {done.returncode}):\n"
        + done.stdout[-6000:] + done.stderr[-2000:])
    for when in ("setup", "call", "teardown"):
        report = pytest.TestReport(
            item.nodeid, item.location, {k: 1 for k in item.keywords},
            outcome if when == "call" else "passed", longrepr if when == "call" else None,
            when, duration=time.time() - started if when == "call" else 0.0)
        item.ihook.pytest_runtest_logreport(report=report)
    # what runtestprotocol does after an item: tear down the fixtures the next item does not
    # share (the module's, when this was its last test)
    item.session._setupstate.teardown_exact(nextitem)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
