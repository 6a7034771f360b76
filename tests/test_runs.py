"""Task run records: attempts counted, lost deliveries bounded, progress and errors kept."""

from __future__ import annotations

import pytest
from sqlmodel import select

from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import TaskRun
from signalcast.ops.runs import GaveUp, _start, recorded_run


def run(engine, task_id) -> TaskRun:
    with session_scope(engine, readonly=True) as session:
        return session.exec(select(TaskRun).where(TaskRun.task_id == task_id)).one()


def test_a_finished_run_records_result_and_progress(db_url):
    engine = init_db(db_url)
    with recorded_run(engine, "t1", 0, "train", {"a": 1}, max_lost=3) as rec:
        rec.progress("fitting")
        rec.result = {"version": 2}
    row = run(engine, "t1")
    assert (row.status, row.attempts, row.progress, row.result) == ("done", 1, "fitting",
                                                                    {"version": 2})
    assert row.finished_at is not None


def test_an_exception_is_recorded_and_re_raised(db_url):
    engine = init_db(db_url)
    with pytest.raises(ValueError), recorded_run(engine, "t2", 0, "predict", {}, max_lost=3):
        raise ValueError("bad candle")
    row = run(engine, "t2")
    assert row.status == "failed" and "ValueError: bad candle" in row.error


def test_a_run_finished_in_the_work_transaction_is_done_only_with_the_work(db_url):
    """finish_in: the done record commits with the work's own writes, or not at all."""
    engine = init_db(db_url)
    with recorded_run(engine, "t5", 0, "predict", {}, max_lost=3) as rec:
        with session_scope(engine) as session:
            _start(session, "work-of-t5", "ingest", {})  # the work's own write
            rec.finish_in(session, {"predictions": 9})
            assert run(engine, "t5").status == "running"  # not committed yet
    row = run(engine, "t5")
    assert (row.status, row.result) == ("done", {"predictions": 9})
    assert run(engine, "work-of-t5").attempts == 1

    with pytest.raises(RuntimeError, match="commit lost"), \
            recorded_run(engine, "t6", 0, "predict", {}, max_lost=3) as rec:
        with session_scope(engine) as session:
            _start(session, "work-of-t6", "ingest", {})
            rec.finish_in(session, {"predictions": 9})
            raise RuntimeError("commit lost")  # the work's transaction rolls back
    row = run(engine, "t6")
    assert row.status == "failed" and row.result == {} and "commit lost" in row.error
    with session_scope(engine, readonly=True) as session:
        assert session.exec(select(TaskRun).where(TaskRun.task_id == "work-of-t6")).first() \
            is None


def test_repeated_lost_deliveries_end_in_a_terminal_failure(db_url):
    engine = init_db(db_url)
    for _ in range(2):  # two deliveries whose worker died: started, never finished
        with session_scope(engine) as session:
            _start(session, "t3", "train", {})
    with pytest.raises(GaveUp, match="worker died 2 times"), \
            recorded_run(engine, "t3", 0, "train", {}, max_lost=2):
        pytest.fail("a run that gave up must not execute")
    row = run(engine, "t3")
    assert row.status == "failed" and row.attempts == 3 and "gave up" in row.error


def test_retries_are_not_counted_as_lost_deliveries(db_url):
    engine = init_db(db_url)
    for retries in range(3):  # each attempt ended in a Celery retry
        with pytest.raises(RuntimeError), recorded_run(engine, "t4", retries, "ingest", {},
                                                        max_lost=1):
            raise RuntimeError("exchange down")
    with recorded_run(engine, "t4", 3, "ingest", {}, max_lost=1):
        pass
    assert run(engine, "t4").status == "done" and run(engine, "t4").attempts == 4
