"""Engines and sessions for SQLite (one host) and Postgres (several hosts).

SQLite is set up for several processes writing one file: WAL journal, a busy timeout, and
``BEGIN IMMEDIATE`` for every transaction (a deferred transaction that later writes can fail with
"database is locked" without waiting; an immediate one waits its turn). Engines are cached per
process id, so a forked Celery child never reuses its parent's connections.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from signalcast.core.errors import ConfigError

SQLITE_BUSY_TIMEOUT_S = 60
PG_POOL_SIZE = 2  # per process: a prefork child runs one task at a time
PG_MAX_OVERFLOW = 2
PG_POOL_RECYCLE_S = 1800  # reopen connections older than this (idle-killing proxies)

_engines: dict[tuple[int, str], Engine] = {}
_lock = threading.Lock()


def _normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001 - DBAPI types
        dbapi_conn.isolation_level = None  # let us issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        # Writers take the lock up front (IMMEDIATE); read-only sessions stay DEFERRED so
        # they never block a writer.
        conn.exec_driver_sql(
            f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'IMMEDIATE')}"
        )


def make_engine(url: str) -> Engine:
    """A new engine for ``url`` (prefer :func:`get_engine`, which caches per process)."""
    url = _normalise_url(url)
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(
            f"SIGNALCAST_DATABASE_URL is not a database URL ({exc}); "
            "use sqlite:///path/to/file.db or postgresql://user@host/db"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
        )
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        # One prefork child runs one task at a time: one pooled connection (plus one for a
        # nested read) is all it uses; 5 + 5 per child made 20 children hold 200 sockets.
        return create_engine(url, pool_pre_ping=True, pool_size=PG_POOL_SIZE,
                             max_overflow=PG_MAX_OVERFLOW, pool_recycle=PG_POOL_RECYCLE_S)
    raise ConfigError(
        f"unsupported database {parsed.get_backend_name()!r}; use sqlite:/// or postgresql://"
    )


def get_engine(url: str) -> Engine:
    """The engine for ``url`` in this process (a forked child gets a fresh one)."""
    key = (os.getpid(), _normalise_url(url))
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = make_engine(url)
        return engine


def dispose_engines() -> None:
    """Forget inherited engines (call in a forked child: their sockets belong to the parent)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)
        _engines.clear()


@contextmanager
def session_scope(url_or_engine: str | Engine, *, readonly: bool = False) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error.

    Keep write sessions short: on SQLite a write transaction holds the file's only write lock.
    ``readonly=True`` begins a deferred transaction that takes no write lock."""
    engine = get_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    if readonly:
        engine = engine.execution_options(sqlite_begin="DEFERRED")
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except Exception:
            session.rollback()
            raise


def init_db(url: str) -> Engine:
    """Create or upgrade the schema at ``url`` to the newest migration; return the engine."""
    from signalcast.db.migrate import upgrade

    engine = get_engine(url)
    upgrade(engine)
    return engine
