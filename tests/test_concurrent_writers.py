"""Several processes writing one database at once: no "database is locked", nothing lost,
nothing doubled. The same suite runs on one SQLite file and on Postgres."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func
from sqlmodel import select

from signalcast.alerts.drain import drain_outbox
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import AlertOutbox, Outcome, TaskRun
from signalcast.ops.runs import recorded_run

pytestmark = pytest.mark.integration

PROCESSES, ROUNDS = 4, 40
# recent candles: the signals queued here are within their age when drained
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _writer(url: str, worker: int, errors) -> None:
    from signalcast.db.upsert import insert_ignore

    try:
        from signalcast.db.engine import get_engine

        engine = get_engine(url)
        for i in range(ROUNDS):
            # every process writes the same outcome keys: one row each must survive
            with session_scope(engine) as session:
                insert_ignore(session, Outcome, {
                    "asset": "BTC/USDT", "target": "1pct_24",
                    "candle_time": T0 + timedelta(hours=i), "label": 1, "bars": 3,
                    "resolved_at": T0}, keys=["asset", "target", "candle_time"])
            with recorded_run(engine, f"run-{worker}-{i}", 0, "probe", {"i": i}, max_lost=3):
                pass
            with session_scope(engine) as session:
                session.add(AlertOutbox(chat_id=f"chat-{worker}", asset="BTC/USDT",
                                        target="1pct_24", candle_time=T0 + timedelta(hours=i),
                                        kind="signal", payload={"i": i}))
    except Exception as exc:  # reported to the parent, which fails the test with it
        errors.put(f"writer {worker}: {type(exc).__name__}: {exc}")


class Recorder:
    html = False

    def __init__(self, sent):
        self.sent = sent

    def send(self, chat_id, text, *, photo=None):
        from signalcast.notifier.telegram import SendResult

        self.sent.put(chat_id)
        return SendResult(1)


def _drainer(url: str, errors, sent) -> None:
    try:
        from signalcast.db.engine import get_engine

        engine = get_engine(url)
        transport = Recorder(sent)
        for _ in range(30):
            drain_outbox(engine, lambda chat: transport, limit=20)
    except Exception as exc:
        errors.put(f"drainer: {type(exc).__name__}: {exc}")


def test_many_processes_write_one_database_without_locks_or_duplicates(db_url):
    engine = init_db(db_url)
    ctx = mp.get_context("spawn")
    errors, sent = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(db_url, w, errors)) for w in range(PROCESSES)]
    procs += [ctx.Process(target=_drainer, args=(db_url, errors, sent)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(240)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    assert all(p.exitcode == 0 for p in procs)
    drain_outbox(engine, lambda chat: Recorder(sent), limit=1000)  # what the drainers left
    delivered = []
    while not sent.empty():
        delivered.append(sent.get())
    with session_scope(engine, readonly=True) as session:
        outcomes = session.exec(select(func.count()).select_from(Outcome)).one()
        runs = session.exec(select(func.count()).select_from(TaskRun)
                            .where(TaskRun.status == "done")).one()
        statuses = session.exec(select(AlertOutbox.status, func.count())
                                .group_by(AlertOutbox.status)).all()
    assert outcomes == ROUNDS
    assert runs == PROCESSES * ROUNDS
    assert dict(statuses) == {"sent": PROCESSES * ROUNDS}
    assert len(delivered) == PROCESSES * ROUNDS  # every alert sent exactly once
