"""db/upsert on both dialects: Postgres takes several rows as one array per column (``INSERT ...
SELECT unnest(...)``), SQLite a multi-row VALUES; both must insert, skip and update the same rows
and return the same counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import event
from sqlmodel import select

from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import Candle, Outcome
from signalcast.db.upsert import insert_new, upsert

T0 = datetime(2024, 3, 1, tzinfo=UTC)
KEYS = ["asset", "target", "candle_time"]


def _outcomes(hours: range, label: int = 1) -> list[dict]:
    return [{"asset": "BTC/USDT", "target": "2pct_72", "candle_time": T0 + timedelta(hours=h),
             "label": label, "bars": h % 5, "resolved_at": T0 + timedelta(days=9)} for h in hours]


def _statements(engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *args: seen.append(statement))
    return seen


def test_insert_new_returns_only_the_rows_it_inserted(db_url):
    engine = init_db(db_url)
    statements = _statements(engine)
    with session_scope(engine) as session:
        first = insert_new(session, Outcome, _outcomes(range(0, 6)), KEYS, returning="bars")
        again = insert_new(session, Outcome, _outcomes(range(0, 6), label=0), KEYS,
                           returning="bars")
        overlap = insert_new(session, Outcome, _outcomes(range(4, 9)), KEYS,
                             returning="candle_time")
        single = insert_new(session, Outcome, _outcomes(range(20, 21)), KEYS, returning="bars")
    assert sorted(first) == [0, 0, 1, 2, 3, 4] and again == [] and single == [0]
    inserts = [s for s in statements if s.startswith("INSERT INTO outcomes")]
    # three calls of several rows, one of one row: arrays on Postgres, VALUES on SQLite
    assert sum("unnest(" in s for s in inserts) == (3 if engine.dialect.name == "postgresql"
                                                    else 0)
    assert sorted(overlap) == [T0 + timedelta(hours=h) for h in (6, 7, 8)]
    with session_scope(engine, readonly=True) as session:
        stored = session.exec(select(Outcome).order_by(Outcome.candle_time)).all()
    assert [o.candle_time for o in stored] == [T0 + timedelta(hours=h)
                                              for h in [*range(9), 20]]
    assert {o.label for o in stored} == {1}  # the second call changed nothing
    assert all(o.candle_time.tzinfo is not None and o.resolved_at == T0 + timedelta(days=9)
               for o in stored)


def test_upsert_updates_only_what_changed_columns_say_and_counts(db_url):
    engine = init_db(db_url)
    candles = [{"asset": "ETH/USDT", "timeframe": "1h", "time": T0 + timedelta(hours=h),
                "open": 10.0 + h, "high": 11.0 + h, "low": 9.0 + h, "close": 10.5 + h,
                "volume": 0.0 if h == 2 else 3.0} for h in range(5)]
    with session_scope(engine) as session:
        assert upsert(session, Candle, candles, ["asset", "timeframe", "time"],
                      update=["open", "high", "low", "close", "volume"]) == 5
        moved = [{**c, "close": c["close"] * 2} for c in candles[3:]]
        assert upsert(session, Candle, moved, ["asset", "timeframe", "time"],
                      update=["close"]) == 2
        assert upsert(session, Candle, candles[:2], ["asset", "timeframe", "time"]) == 0
    with session_scope(engine, readonly=True) as session:
        closes = session.exec(select(Candle.close).order_by(Candle.time)).all()
    assert closes == [10.5, 11.5, 12.5, 27.0, 29.0]


def test_nulls_and_json_columns_are_stored_as_given(db_url):
    """A column NULL in every row (its array holds no value to tell its type), and a table with
    a JSON column (the outbox: the multi-row VALUES path on both dialects)."""
    from signalcast.db.tables import AlertOutbox, CandleGap

    engine = init_db(db_url)
    gaps = [{"asset": "SOL/USDT", "timeframe": "1h", "first_missing": T0 + timedelta(hours=h),
             "last_missing": T0 + timedelta(hours=h + 1), "missing": 2, "status": "open",
             "reason": "", "checks": 1, "first_seen": T0, "last_checked": T0,
             "filled_at": None} for h in (0, 10, 20)]
    outbox = [{"chat_id": "console", "asset": "SOL/USDT", "target": "1pct_24",
               "candle_time": T0, "kind": kind, "payload": {"n": i}, "status": "pending",
               "attempts": 0, "created_at": T0, "next_attempt_at": T0, "sent_at": None}
              for i, kind in enumerate(["signal", "outcome"])]
    with session_scope(engine) as session:
        assert upsert(session, CandleGap, gaps, ["asset", "timeframe", "first_missing"],
                      update=["last_missing", "checks"]) == 3
        assert len(insert_new(session, AlertOutbox, outbox,
                              ["chat_id", "asset", "target", "candle_time", "kind"],
                              returning="kind")) == 2
    with session_scope(engine, readonly=True) as session:
        stored = session.exec(select(CandleGap).order_by(CandleGap.first_missing)).all()
        payloads = session.exec(select(AlertOutbox.payload).order_by(AlertOutbox.kind)).all()
    assert [g.filled_at for g in stored] == [None] * 3
    assert [g.last_missing for g in stored] == [T0 + timedelta(hours=h + 1) for h in (0, 10, 20)]
    assert payloads == [{"n": 1}, {"n": 0}]
