"""Replay ticks in this process: per simulated tick, the pipeline functions its Celery tasks run,
in their order, under their task ids and run records, with no broker and no worker.

``signalcast replay`` used to publish every tick to an embedded Celery worker
(scheduler/jobs.candle_close_tick, then wait for the chain): about 0.4-0.6 s of broker and
result-backend round trips per tick for 3 assets, most of a replay's time. A replay has no
workers to spread over and nothing to wait for, so here one tick (all assets of a timeframe at
one fire time) is, as the worker would run it (scheduler/ticks.py, tasks/tasks.py):

1. per asset, the (job, fire time) row of ``scheduled_enqueues`` with the task ids its chain
   would run under (an asset already recorded for this job and time is skipped, as
   ``enqueue_once`` skips it), and the tick's one drain row;
2. every asset's ``ingest`` (the worker runs them first: they are queued first);
3. per asset whose ingest succeeded, ``predict`` (refused after the tick's deadline, as the
   task refuses) then ``resolve`` (outcomes, then online learning and drift); a drift retrain
   the resolve asks for runs right after it, recorded under its ``train:...`` task id;
4. the drain of the outbox.

Each step leaves the ``task_runs`` row its task leaves (same id, name, args, status, result,
error), so status and the web pages read a replay the same whichever path ran it;
``tests/test_replay_inprocess.py`` checks that both paths store the same predictions,
outcomes, alerts, enqueue rows and run records. What differs, for speed: a tick writes its
enqueue rows in one transaction before its steps and their run records in one statement after
them (a worker writes each run's start and end in transactions of their own, so that progress
shows while it runs: nothing here runs long enough to need it, but a drift retrain is recorded
as it runs); nothing is published (the enqueue rows carry no signature); a failed step is
recorded and reported, not retried with Celery's backoff (stored history has no outage to wait
out).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from signalcast.config import Settings
from signalcast.core.logs import log_context
from signalcast.core.queues import tick_deadline, tick_key, train_task_id
from signalcast.core.timeframes import last_closed_open_time, utc
from signalcast.db.engine import session_scope
from signalcast.db.tables import ScheduledEnqueue, utcnow
from signalcast.db.upsert import upsert
from signalcast.ops.runs import recorded_run, store_finished_runs


@dataclass
class TickReport:
    """What one replayed tick did: per asset its task results, and the failures (as the
    Celery path's ``wait_tick`` reports them: ``<task id>: <error>``)."""

    now: datetime
    assets: list[str] = field(default_factory=list)  # the assets this call ran (not skipped)
    failures: list[str] = field(default_factory=list)
    results: dict[str, dict] = field(default_factory=dict)  # task id -> its run's result


class InlineEnqueuer:
    """:class:`~signalcast.core.ports.Enqueuer` of a replay: work asked for while a step runs
    (a drift retrain, a drain) is kept and run by :meth:`run_pending` once that step's run
    record is closed, as a worker would pick the message up after it."""

    def __init__(self, runner: ReplayRunner) -> None:
        self._runner = runner
        self.pending: list[Callable[[], None]] = []

    def train(self, asset: str, target: str, family: str, now: datetime, *,
              history_candles: int | None = None) -> str:
        task_id = train_task_id(asset, target, family, now, history_candles)
        self.pending.append(lambda: self._runner.train(asset, target, family, now,
                                                       history_candles))
        return task_id

    def drain_alerts(self) -> None:
        self.pending.append(lambda: self._runner.drain(None))

    def run_pending(self) -> None:
        while self.pending:
            self.pending.pop(0)()


class ReplayRunner:
    """Runs ticks of ``settings`` against ``engine`` in this process (see the module doc)."""

    def __init__(self, engine: Engine, settings: Settings, *, job: str = "replay",
                 clock: Callable[[], datetime] = utcnow, assets: Collection[str] | None = None,
                 drain: bool = True) -> None:
        """``assets``: run the steps of these assets only (None: every configured one);
        ``drain``: end each tick with the drain (a :class:`ParallelReplay` worker leaves it to
        the parent, which drains once all assets of the tick are done)."""
        self.engine, self.settings, self.job, self.clock = engine, settings, job, clock
        self.only = None if assets is None else set(assets)
        self.drains = drain
        self.max_lost = settings.workers.max_lost_deliveries
        self.enqueuer = InlineEnqueuer(self)
        self._report: TickReport | None = None
        self._runs: list[dict[str, Any]] = []  # the tick's run records, stored at its end

    # -- one tick ------------------------------------------------------------------------------

    def tick(self, now: datetime, timeframe: str | None = None) -> TickReport:
        """One candle-close tick at ``now`` (every timeframe, or only ``timeframe``)."""
        now = utc(now)
        report = self._report = TickReport(now)
        try:
            for tf in sorted({a.timeframe for a in self.settings.assets}):
                if timeframe is None or tf == timeframe:
                    self._tick_timeframe(now, tf, report)
        finally:
            self._report = None
            self._flush_runs()
        return report

    def _tick_timeframe(self, now: datetime, tf: str, report: TickReport) -> None:
        candle_time, published, deadline = self._tick_times(now, tf)
        assets = [a.symbol for a in self.settings.assets
                  if a.timeframe == tf and (self.only is None or a.symbol in self.only)]
        keys = {a: tick_key(self.job, a, candle_time) for a in assets}
        ids = {a: [f"{k}:ingest", f"{k}:predict", f"{k}:resolve"] for a, k in keys.items()}
        drain_id = self._drain_id(tf, candle_time)
        assets = self._record_enqueues(candle_time, deadline, published, assets, ids,
                                       drain_id if self.drains else None)
        if not assets:
            return
        report.assets += assets
        when, iso_deadline = now.isoformat(), deadline.isoformat()
        ingested = [a for a in assets
                    if self._run(ids[a][0], "ingest", {"asset": a, "now": when},
                                 lambda a=a: self._ingest(a, now))]
        for asset in ingested:
            self._run(ids[asset][1], "predict",
                      {"asset": asset, "candle_time": candle_time.isoformat()},
                      lambda a=asset: self._predict(a, candle_time, iso_deadline))
            self._run(ids[asset][2], "resolve", {"asset": asset, "now": when},
                      lambda a=asset: self._resolve(a, now))
            self.enqueuer.run_pending()
        if self.drains:
            self.drain(drain_id)

    def drain_tick(self, now: datetime, timeframes: Collection[str]) -> TickReport:
        """The drain of a tick whose asset steps ran elsewhere (:class:`ParallelReplay`'s
        workers) for ``timeframes``: its enqueue row and its run, as :meth:`tick` leaves
        them."""
        now = utc(now)
        report = self._report = TickReport(now)
        try:
            for tf in sorted(timeframes):
                candle_time, published, deadline = self._tick_times(now, tf)
                drain_id = self._drain_id(tf, candle_time)
                with session_scope(self.engine) as session:
                    upsert(session, ScheduledEnqueue,
                           [self._enqueue_row(f"drain:{self.job}:{tf}", [drain_id], candle_time,
                                              deadline, published)], keys=["job", "fire_time"])
                self.drain(drain_id)
        finally:
            self._report = None
            self._flush_runs()
        return report

    def _tick_times(self, now: datetime, tf: str) -> tuple[datetime, datetime, datetime]:
        """(the tick's candle, when it is published, its deadline) for timeframe ``tf``."""
        candle_time = last_closed_open_time(now, tf)
        published = utc(self.clock())
        return candle_time, published, tick_deadline(candle_time, tf, published)

    def _drain_id(self, tf: str, candle_time: datetime) -> str:
        return f"{tick_key(self.job, f'drain:{tf}', candle_time)}:alerts"

    @staticmethod
    def _enqueue_row(job: str, task_ids: list[str], candle_time: datetime, deadline: datetime,
                     published: datetime) -> dict[str, Any]:
        return {"job": job, "fire_time": candle_time, "task_ids": task_ids, "status": "sent",
                "deadline": deadline, "signature": {}, "enqueued_at": published,
                "sent_at": published, "redos": 0}

    def _record_enqueues(self, candle_time: datetime, deadline: datetime, published: datetime,
                         assets: list[str], ids: dict[str, list[str]],
                         drain_id: str | None) -> list[str]:
        """The tick's ``scheduled_enqueues`` rows (the drain's too, unless ``drain_id`` is
        None), in one transaction; the assets not recorded before (``enqueue_once`` skips the
        others)."""
        tf_of = {a.symbol: a.timeframe for a in self.settings.assets}

        def row(job: str, task_ids: list[str]) -> dict[str, Any]:
            return self._enqueue_row(job, task_ids, candle_time, deadline, published)

        fresh = []
        with session_scope(self.engine) as session:
            for asset in assets:
                if upsert(session, ScheduledEnqueue, [row(f"{self.job}:{asset}", ids[asset])],
                          keys=["job", "fire_time"]):
                    fresh.append(asset)
            if fresh and drain_id is not None:
                upsert(session, ScheduledEnqueue,
                       [row(f"drain:{self.job}:{tf_of[fresh[0]]}", [drain_id])],
                       keys=["job", "fire_time"])
        return fresh

    # -- the steps (tasks/tasks.py, without Celery) -----------------------------------------

    def _run(self, task_id: str, name: str, args: dict[str, Any],
             body: Callable[[], dict]) -> bool:
        """Run ``body`` as the task would, its run record kept for :meth:`_flush_runs`; True
        when it succeeded."""
        report = self._report
        fields = {k: args[k] for k in ("asset", "target", "family") if k in args}
        row = {"task_id": task_id, "name": name, "args": args, "status": "done",
               "attempts": 1, "progress": None, "result": {}, "error": None,
               "started_at": utcnow()}
        try:
            with log_context(task_id=task_id, task=name, **fields):
                result = body()
        except Exception as exc:
            row.update(status="failed", error=(f"{type(exc).__name__}: {exc}\n"
                                               f"{traceback.format_exc(limit=3)}")[:2000])
            if report is not None:
                report.failures.append(f"{task_id}: {exc!r}")
        else:
            row["result"] = result
            if report is not None:
                report.results[task_id] = result
        row["finished_at"] = utcnow()
        self._runs.append(row)
        return row["status"] == "done"

    def _flush_runs(self) -> None:
        """Store the tick's run records in one statement, as ``recorded_run`` leaves them (a
        task id recorded before counts one more attempt, as a redelivery does)."""
        rows, self._runs = self._runs, []
        if not rows:
            return
        with session_scope(self.engine) as session:
            store_finished_runs(session, rows)

    def _ingest(self, asset: str, now: datetime) -> dict:
        from signalcast.pipeline.ingest import ingest_asset

        with session_scope(self.engine) as session:
            return ingest_asset(session, self.settings, asset, now)

    def _predict(self, asset: str, candle_time: datetime,
                 deadline: str) -> dict:
        from signalcast.pipeline.predict import predict_candle

        if datetime.now(UTC) > datetime.fromisoformat(deadline):
            why = (f"too late: the tick's deadline {deadline} passed (the candle's next close); "
                   "a signal now would carry the price levels of then")
            return {"asset": asset, "candle_time": candle_time.isoformat(), "predictions": 0,
                    "alerts": 0, "skipped": {"*": why}, "expired": True}
        return predict_candle(self.engine, self.settings, asset, candle_time).to_dict()

    def _resolve(self, asset: str, now: datetime) -> dict:
        from signalcast.pipeline.learn import learn_from_outcomes
        from signalcast.pipeline.resolve import resolve_asset

        outcomes = resolve_asset(self.engine, self.settings, asset, now)
        learned = learn_from_outcomes(self.engine, self.settings, asset, now,
                                      enqueuer=self.enqueuer)
        return {"asset": asset, "outcomes": outcomes, "online": learned.to_dict()}

    def train(self, asset: str, target: str, family: str, now: datetime,
              history_candles: int | None = None) -> None:
        """A training asked for by a step (a drift retrain, on its recent window), under its
        task's id and arguments, recorded as it runs (``recorded_run``: its progress is visible
        meanwhile)."""
        from signalcast.lifecycle.train import train_model, train_result

        task_id = train_task_id(asset, target, family, now, history_candles)
        args = {"asset": asset, "target": target, "family": family, "now": utc(now).isoformat()}
        if history_candles is not None:
            args["history_candles"] = int(history_candles)
        self._flush_runs()  # the steps before it are recorded first, as a worker's would be
        try:
            with log_context(task_id=task_id, task="train", asset=asset, target=target,
                             family=family), \
                    recorded_run(self.engine, task_id, 0, "train", args, self.max_lost) as run:
                version = train_model(self.engine, self.settings, asset, target, family,
                                      now=utc(now), progress=run.progress,
                                      history_candles=history_candles,
                                      reason=None if history_candles is None else "drift")
                run.result = train_result(version)
        except Exception as exc:
            if self._report is not None:
                self._report.failures.append(f"{task_id}: {exc!r}")

    def drain(self, task_id: str | None) -> None:
        """Drain the outbox (the tick's drain, or one asked for: a fresh id, as a direct call
        of the task gets)."""
        import uuid

        from signalcast.alerts.drain import drain_outbox
        from signalcast.notifier.transports import transports_for

        def body() -> dict:
            return drain_outbox(self.engine, transports_for(self.settings),
                                settings=self.settings).to_dict()

        self._run(task_id or f"local-{uuid.uuid4()}", "send_alerts", {}, body)
