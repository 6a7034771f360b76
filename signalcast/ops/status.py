"""The one status of a deployment, as plain data: ``signalcast status`` (rendered by
:mod:`signalcast.cli.render`), the bot's ``/status`` (:mod:`signalcast.bot.render`) and the
dashboard read the same dictionary, so they cannot disagree.

It holds the cluster (workers per queue, queue depths, the last tick and whether it is late,
failed task runs), per asset the newest candle, open gaps and champions, today's alerts by
status, running tasks, and alert, task-run and row counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select

from signalcast.alerts.gate import GateState, signal_gate
from signalcast.config import Settings
from signalcast.core.ports import ClusterProbe
from signalcast.core.timeframes import timeframe_to_timedelta
from signalcast.db.candles import last_candle_time
from signalcast.db.engine import session_scope
from signalcast.db.tables import AlertOutbox, ModelVersion, TaskRun
from signalcast.ops import summary
from signalcast.ops.cluster import cluster_state, workers_per_queue
from signalcast.pipeline.gaps import open_gaps


def collect_status(engine: Engine, settings: Settings, now: datetime | None = None, *,
                   probe: ClusterProbe | None = None, timeout: float = 1.0) -> dict[str, Any]:
    """Everything a status screen shows. ``probe`` asks the workers who runs (none: no worker
    list); unreachable services are reported under ``cluster.broker_error``, never raised."""
    now = now or datetime.now(UTC)
    data = _collect_tables(engine, settings, now)
    data["cluster"] = collect_cluster(engine, settings, now, probe=probe, timeout=timeout)
    return data


def collect_cluster(engine: Engine, settings: Settings, now: datetime, *,
                    probe: ClusterProbe | None = None, timeout: float = 1.0) -> dict[str, Any]:
    """:func:`cluster_state` plus what a reader judges it by: workers per queue, the last
    tick's age and whether it is late. A tick is recorded under the open time of the candle it
    predicts, so right after a tick its age is one timeframe and just before the next one two:
    late means older than two of the shortest timeframe plus the predict delay and the misfire
    grace."""
    state = cluster_state(engine, settings, probe, timeout)
    state["workers_per_queue"] = workers_per_queue(state["workers"])
    state["last_tick_age_seconds"] = None
    state["tick_late"] = False
    if state["last_tick"]:
        age = (now - datetime.fromisoformat(state["last_tick"])).total_seconds()
        step = min(timeframe_to_timedelta(a.timeframe) for a in settings.assets)
        allowed = (2 * step.total_seconds() + settings.schedule.predict_delay_seconds
                   + settings.schedule.misfire_grace_seconds)
        state["last_tick_age_seconds"] = age
        state["tick_late"] = state["broker"] == "redis" and age > allowed
    return state


def champion_line(family: str, version: int, metrics: dict[str, Any], gate: GateState) -> str:
    """``hmm v2: skill +0.069 (low +0.047) vs base rate, AUC 0.64 (null 0.50+-0.03); alerts
    open``: the held-out figures beside their benchmarks, and whether its alerts go out."""
    def num(key: str, fmt: str) -> str:
        value = metrics.get(key)
        return "?" if value is None else format(value, fmt)

    head = f"{family} v{version}"
    if "gate_open" not in metrics:
        figures = "no walk-forward figures (retrain)"
    else:
        figures = (f"skill {num('brier_skill', '+.3f')} (low {num('skill_lower', '+.3f')}) vs "
                   f"base rate, AUC {num('auc', '.2f')} (null {num('auc_null_mean', '.2f')}"
                   f"+-{num('auc_null_sd', '.2f')})")
    live = ""
    if gate.live is not None:
        live = f", live skill {gate.live['skill']:+.3f} on {gate.live['n']}"
    state = "open" if gate.open else f"held: {gate.reason}"
    return f"{head}: {figures}{live}; alerts {state}"


def _collect_tables(engine: Engine, settings: Settings, now: datetime) -> dict[str, Any]:
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with session_scope(engine, readonly=True) as session:
        assets = []
        for cfg in settings.assets:
            newest = last_candle_time(session, cfg.symbol, cfg.timeframe)
            champions = session.exec(select(  # columns only: artifacts stay in the database
                ModelVersion.id, ModelVersion.target, ModelVersion.family, ModelVersion.version,
                ModelVersion.metrics).where(
                ModelVersion.asset == cfg.symbol, ModelVersion.role == "champion")).all()
            gates = {m.target: signal_gate(session, settings, cfg.symbol, m.target, m.id)
                     for m in champions}
            assets.append({
                "asset": cfg.symbol, "timeframe": cfg.timeframe,
                "last_candle": newest.isoformat() if newest else None,
                "gaps": open_gaps(session, cfg.symbol, cfg.timeframe),
                "champions": {m.target: champion_line(m.family, m.version, m.metrics,
                                                      gates[m.target])
                              for m in champions},
                "gates": {t: g.to_dict() for t, g in gates.items()},
            })
        return {
            "database": settings.redacted()["environment"]["database_url"],
            "assets": assets,
            "alerts": summary.alert_counts(session),
            "tasks": summary.task_counts(session),
            "rows": summary.table_counts(session),
            "targets": [vars(s) | {"hit_rate": s.hit_rate, "majority_rate": s.majority_rate}
                        for s in summary.target_summaries(session)],
            "alerts_today": dict(session.exec(
                select(AlertOutbox.status, func.count()).where(AlertOutbox.created_at >= day)
                .group_by(AlertOutbox.status)).all()),
            "champions": sum(len(a["champions"]) for a in assets),
            "expected_champions": len(settings.assets) * len(settings.targets),
            "running_tasks": session.exec(select(func.count()).select_from(TaskRun).where(
                TaskRun.status == "running")).one(),
        }
