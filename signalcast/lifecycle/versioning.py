"""Version numbers that stay unique with several train workers.

Two trainings of one (asset, target, family) on different data may run at once (cron,
``/retrain``, drift; more than one train worker on Postgres). Both read ``max(version)`` and
pick the same next number. On Postgres the number is therefore allocated under a transaction
advisory lock of (asset, target, family): the second training waits for the first to commit,
then reads the new maximum (READ COMMITTED: each statement sees what is committed). Should an
insert still hit the ``(asset, target, family, version)`` unique key (a writer that does not
take the lock) or the one-champion index (both would be the first champion), the loser does not
throw its fit away: it reads again and retries with the next free number, in a fresh
transaction, up to :data:`ATTEMPTS` times. SQLite serialises writers (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable

from sqlalchemy import func, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from signalcast.db.engine import session_scope
from signalcast.db.tables import ModelVersion

log = logging.getLogger(__name__)
ATTEMPTS = 8


def lock_key(asset: str, target: str, family: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock``."""
    digest = hashlib.sha256(f"model_version|{asset}|{target}|{family}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def next_version(session: Session, asset: str, target: str, family: str) -> int:
    """The next free version number, read under the allocation lock on Postgres."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": lock_key(asset, target, family)})
    latest = session.exec(select(func.max(ModelVersion.version)).where(
        ModelVersion.asset == asset, ModelVersion.target == target,
        ModelVersion.family == family)).one()
    return (latest or 0) + 1


def store_version(engine: Engine, asset: str, target: str, family: str,
                  build: Callable[[int], ModelVersion],
                  placed: Callable[[Session, ModelVersion], None], *,
                  find_existing: Callable[[Session], ModelVersion | None]) -> ModelVersion:
    """Insert ``build(next free version)`` and run ``placed(session, row)`` (role, audit,
    purge) in the same transaction; on a unique-key conflict return the identical twin when a
    concurrent run of the same training stored it (``find_existing``), else retry with the next
    number."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with session_scope(engine) as session:
                existing = find_existing(session)
                if existing is not None:
                    return existing
                row = build(next_version(session, asset, target, family))
                placed(session, row)
            return row
        except IntegrityError as exc:
            with session_scope(engine, readonly=True) as session:
                existing = find_existing(session)
            if existing is not None:
                return existing
            if attempt == ATTEMPTS:
                raise
            log.info("%s %s %s: version %d taken by a concurrent training, retrying (%s)",
                     asset, target, family, row.version, type(exc.orig).__name__)
            time.sleep(random.uniform(0.0, 0.05 * attempt))  # de-synchronise the racers
    raise AssertionError("unreachable")
