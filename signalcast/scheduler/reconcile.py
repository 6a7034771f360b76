"""The reconciler: an enqueue is not the work. Find work that did not land and enqueue it again.

A broker that loses its data (a restart without persistence, the last second of AOF) loses
queued tasks silently, and ``scheduled_enqueues`` would still say "enqueued". So every tick has
an expected result: a served prediction per (asset, target) that has a model, and its outcome
resolution; the scheduler runs :func:`reconcile` every ``schedule.reconcile_seconds``:

1. **Pending enqueues** (committed, publish not confirmed) older than
   ``schedule.pending_republish_seconds`` are published again from their stored signature
   (deterministic task ids: a publish that had succeeded costs one idempotent rerun).
2. **Ticks** sent at least ``schedule.tick_landing_seconds`` ago: landed when their expected
   result is stored; still in flight while a task of theirs runs (within its hard time limit
   plus one visibility timeout) or the ``predict`` queue still holds messages. Otherwise the
   tasks with no record were lost: the tick is re-enqueued under fresh ids (``:r1``, ``:r2``,
   at most ``schedule.max_tick_redos`` times), with its original deadline; a tick whose
   deadline passed is marked ``expired`` (a late signal is not made), one lost more often is
   ``failed``. Ticks whose tasks all ended (done or failed) without the full result are
   ``incomplete``: their run records say why (a failed ingest, a skipped target).
3. **Trainings** (acknowledged on receipt, so a dead host took their message with it) still
   ``running`` past their hard time limit are marked ``lost`` and enqueued again under their
   own id; the attempt counter (``workers.max_lost_deliveries``) bounds the loop.

The operator is told: a warning in the log and one system alert per episode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from signalcast.alerts.rules import SYSTEM, queue_alert
from signalcast.config import Settings
from signalcast.core.timeframes import timeframe_to_timedelta, utc
from signalcast.db.engine import session_scope
from signalcast.db.tables import ModelVersion, Prediction, ScheduledEnqueue, TaskRun, utcnow
from signalcast.ops.runs import FINAL, mark_lost, run_states
from signalcast.scheduler.enqueue import mark, publish, task_ids
from signalcast.scheduler.ticks import TickPlan, TickResults, asset_plan, drain_signature
from signalcast.tasks import tasks
from signalcast.tasks.app import ACKED_ON_RECEIPT, TIME_LIMITS

log = logging.getLogger(__name__)
LIVE = "tick"  # the live scheduler's key space (a replay's is its own)
QueueDepth = Callable[[], int | None]  # messages waiting in the predict queue; None: unknown


def reconcile(engine: Engine, settings: Settings, now: datetime | None = None, *,
              predict_backlog: QueueDepth | None = None) -> dict[str, int]:
    """One pass (see the module docstring); returns what it did, by kind."""
    now = utc(now or utcnow())
    done = {"republished": 0, "landed": 0, "in_flight": 0, "redone": 0, "expired": 0,
            "failed": 0, "incomplete": 0, "trainings": 0}
    notes: list[str] = []
    done["republished"] = _republish_pending(engine, settings, now, notes)
    redo: dict[str, list[TickPlan]] = {}
    backlog: int | None | str = "unasked"
    for row in _sent_ticks(engine, settings, now):
        verdict = _judge(engine, settings, row, now)
        if verdict == "lost":
            if backlog == "unasked":
                backlog = predict_backlog() if predict_backlog else 0
            if backlog is None or backlog > 0:
                continue  # the broker is down, or the work may still be queued: look later
            verdict = _redo_or_give_up(engine, settings, row, now, redo, notes)
        if verdict in ("landed", "expired", "failed", "incomplete"):
            mark(engine, row.job, row.fire_time, status=verdict)
        done[verdict] = done.get(verdict, 0) + 1
    for timeframe, plans in redo.items():
        publish(drain_signature(LIVE, timeframe, plans[0].candle_time, plans, settings,
                                redo=max(_redo_of(p) for p in plans)), f"drain of {timeframe}")
    done["trainings"] = _recover_trainings(engine, now, notes)
    if notes:
        _tell_operator(engine, settings, now, notes)
    return done


def redo_tick(engine: Engine, settings: Settings, now: datetime,
              timeframe: str | None = None) -> TickResults:
    """``signalcast tick --at T --redo``: enqueue the tick at ``now`` again under fresh ids,
    whatever ``scheduled_enqueues`` says (an enqueue never recorded is made as usual)."""
    from signalcast.core.timeframes import last_closed_open_time
    from signalcast.scheduler.jobs import candle_close_tick

    now = utc(now)
    results = TickResults()
    for tf in sorted({a.timeframe for a in settings.assets}):
        if timeframe is not None and tf != timeframe:
            continue
        candle_time = last_closed_open_time(now, tf)
        assets = [a.symbol for a in settings.assets if a.timeframe == tf]
        rows = {a: _row(engine, f"{LIVE}:{a}", candle_time) for a in assets}
        if any(row is None for row in rows.values()):  # never enqueued: as the scheduler would
            fresh = candle_close_tick(engine, settings, now, tf)
            results.extend(fresh)
            results.assets += fresh.assets
            results.drain = fresh.drain
        plans = []
        for asset, row in rows.items():
            if row is not None:
                plan = asset_plan(LIVE, asset, tf, now, candle_time, redo=row.redos + 1)
                results.append(_send_redo(engine, row, plan))
                results.assets += 1
                plans.append(plan)
        if plans:
            results.drain = publish(drain_signature(LIVE, tf, candle_time, plans, settings,
                                                    redo=max(map(_redo_of, plans))),
                                    f"drain of {tf}")
    return results


# -- pending -----------------------------------------------------------------------------------


def _republish_pending(engine: Engine, settings: Settings, now: datetime,
                       notes: list[str]) -> int:
    older = now - timedelta(seconds=settings.schedule.pending_republish_seconds)
    with session_scope(engine, readonly=True) as session:
        rows = session.exec(select(ScheduledEnqueue).where(
            ScheduledEnqueue.status == "pending", ScheduledEnqueue.enqueued_at <= older)).all()
    count, published = 0, set()
    for row in rows:
        if row.deadline is not None and now > row.deadline:
            mark(engine, row.job, row.fire_time, status="expired")
            notes.append(f"{row.job} at {row.fire_time:%Y-%m-%d %H:%M} was never published "
                         "and is past its deadline: not made")
            continue
        if not row.signature:
            continue
        shared = row.task_ids[0] if row.task_ids else None  # a batch's rows share one flow
        if shared is None or shared not in published:
            log.warning("%s at %s: enqueue recorded but its publish was not confirmed; "
                        "publishing it again", row.job, row.fire_time)
            publish(row.signature, f"{row.job} at {row.fire_time}")
            published.add(shared)
        mark(engine, row.job, row.fire_time, status="sent", sent_at=utcnow())
        count += 1
    return count


# -- ticks -------------------------------------------------------------------------------------


def _sent_ticks(engine: Engine, settings: Settings, now: datetime) -> list[ScheduledEnqueue]:
    older = now - timedelta(seconds=settings.schedule.tick_landing_seconds)
    with session_scope(engine, readonly=True) as session:
        return list(session.exec(select(ScheduledEnqueue).where(
            col(ScheduledEnqueue.job).like(f"{LIVE}:%"), ScheduledEnqueue.status == "sent",
            ScheduledEnqueue.sent_at <= older)).all())


def expected_result(engine: Engine, settings: Settings, asset: str,
                    candle_time: datetime) -> tuple[set[str], set[str]]:
    """(targets that should have a served prediction, targets that have one) at a candle."""
    with session_scope(engine, readonly=True) as session:
        modelled = set(session.exec(select(ModelVersion.target).where(
            ModelVersion.asset == asset, ModelVersion.role != "retired")).all())
        landed = set(session.exec(select(Prediction.target).where(
            Prediction.asset == asset, Prediction.candle_time == candle_time,
            Prediction.served)).all())
    return {t.key for t in settings.targets} & modelled, landed


def _judge(engine: Engine, settings: Settings, row: ScheduledEnqueue, now: datetime) -> str:
    """landed | in_flight | lost | failed | expired, for one sent tick row."""
    asset = row.job.split(":", 1)[1]
    ids = row.task_ids[:3]
    runs = run_states(engine, ids)
    expected, landed = expected_result(engine, settings, asset, row.fire_time)
    resolved = len(ids) == 3 and ids[2] in runs and runs[ids[2]].status == "done"
    if expected <= landed and resolved:
        return "landed"
    grace = timedelta(seconds=settings.workers.visibility_timeout_seconds
                      + settings.workers.restore_sweep_seconds)
    lost = False
    for task_id in ids:
        run = runs.get(task_id)
        if run is None:
            if task_id.endswith(":ingest") or _ingest_done(ids, runs):
                lost = True
            continue
        if run.status == "running":
            hard = TIME_LIMITS.get(f"signalcast.{run.name}", (0, 600))[1]
            if now - run.started_at <= timedelta(seconds=hard) + grace:
                return "in_flight"
            lost = True
    if lost:
        return "lost"
    return "incomplete" if all(r.status in FINAL for r in runs.values()) else "in_flight"


def _ingest_done(ids: list[str], runs: dict[str, TaskRun]) -> bool:
    return bool(ids) and ids[0] in runs and runs[ids[0]].status == "done"


def _redo_or_give_up(engine: Engine, settings: Settings, row: ScheduledEnqueue, now: datetime,
                     redo: dict[str, list[TickPlan]], notes: list[str]) -> str:
    asset = row.job.split(":", 1)[1]
    when = f"{asset} at {row.fire_time:%Y-%m-%d %H:%M}"
    if row.deadline is not None and now > row.deadline:
        log.warning("tick %s: its work never landed and its deadline passed; not made", when)
        notes.append(f"tick {when}: lost, past its deadline (not made)")
        return "expired"
    if row.redos >= settings.schedule.max_tick_redos:
        log.error("tick %s: its work was lost %d times; giving up", when, row.redos + 1)
        notes.append(f"tick {when}: lost again after {row.redos} re-enqueue(s); given up")
        return "failed"
    try:
        cfg = settings.asset(asset)
    except Exception:  # an asset no longer configured: nothing to redo
        return "failed"
    plan = asset_plan(LIVE, cfg.symbol, cfg.timeframe, _tick_now(row, cfg.timeframe, settings),
                      row.fire_time, redo=row.redos + 1, deadline=row.deadline)
    log.warning("tick %s: enqueued but its work never landed (the broker lost it?); "
                "re-enqueued as %s", when, plan.ids[0].rsplit(":", 1)[0])
    _send_redo(engine, row, plan)
    redo.setdefault(cfg.timeframe, []).append(plan)
    notes.append(f"tick {when}: lost, re-enqueued")
    return "redone"


def _send_redo(engine: Engine, row: ScheduledEnqueue, plan: TickPlan):
    result = publish(plan.flow, f"redo of {row.job} at {row.fire_time}")
    mark(engine, row.job, row.fire_time, status="sent", sent_at=utcnow(),
         redos=row.redos + 1, task_ids=task_ids(plan.flow), signature=dict(plan.flow),
         deadline=plan.deadline)
    return result


def _redo_of(plan: TickPlan) -> int:
    part = plan.ids[0].rsplit(":", 2)[-2]
    return int(part[1:]) if part.startswith("r") and part[1:].isdigit() else 0


def _tick_now(row: ScheduledEnqueue, timeframe: str, settings: Settings) -> datetime:
    """The tick time the row was enqueued with (its ingest's argument)."""
    try:
        return datetime.fromisoformat(row.signature["kwargs"]["tasks"][0]["args"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return (row.fire_time + timeframe_to_timedelta(timeframe)
                + timedelta(seconds=settings.schedule.predict_delay_seconds))


def _row(engine: Engine, job: str, fire_time: datetime) -> ScheduledEnqueue | None:
    with session_scope(engine, readonly=True) as session:
        return session.get(ScheduledEnqueue, (job, fire_time))


# -- trainings ---------------------------------------------------------------------------------


def _recover_trainings(engine: Engine, now: datetime, notes: list[str]) -> int:
    names = [n.removeprefix("signalcast.") for n in ACKED_ON_RECEIPT]
    with session_scope(engine, readonly=True) as session:
        running = session.exec(select(TaskRun).where(
            col(TaskRun.name).in_(names), TaskRun.status == "running")).all()
    count = 0
    for run in running:
        hard = TIME_LIMITS[f"signalcast.{run.name}"][1]
        if now - run.started_at <= timedelta(seconds=hard + 60):
            continue
        why = (f"lost: still 'running' {now - run.started_at} after it started, past its hard "
               f"time limit ({hard} s): its worker died; enqueued again")
        mark_lost(engine, run.task_id, why)
        task: Any = getattr(tasks, run.name)
        publish(task.si(**run.args).set(task_id=run.task_id), f"{run.name} {run.task_id}")
        log.warning("%s %s: %s", run.name, run.task_id, why)
        notes.append(f"{run.name} {run.task_id}: worker died, enqueued again")
        count += 1
    return count


def _tell_operator(engine: Engine, settings: Settings, now: datetime, notes: list[str]) -> None:
    """One system alert per reconcile pass that found something (through the alert rules'
    system kind and the drain), and the log."""
    log.warning("reconciler: %s", "; ".join(notes))
    with session_scope(engine) as session:
        queued = queue_alert(session, settings, "system", SYSTEM, "reconciler", now.replace(
            microsecond=0), {"check": "task_failures", "task": "tick", "failures": len(notes),
                             "minutes": max(1, settings.schedule.reconcile_seconds // 60),
                             "last_error": "; ".join(notes)[:300]})
    if queued:
        try:
            tasks.send_alerts.apply_async()
        except Exception as exc:  # the periodic drain sends it later
            log.error("reconciler queued %d alert(s) but cannot enqueue a drain: %s", queued, exc)
