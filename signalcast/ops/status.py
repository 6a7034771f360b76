"""What ``signalcast status`` shows: the cluster (workers per queue, queue depths, the last
tick, failed task runs), per asset the newest candle, open gaps (candles the exchange did not
deliver) and champions; alerts, task runs and row counts. Returned as plain data so the CLI and
the bot render it their own way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlmodel import select

from signalcast.config import Settings
from signalcast.core.timeframes import timeframe_to_timedelta
from signalcast.db.candles import last_candle_time
from signalcast.db.engine import session_scope
from signalcast.db.tables import ModelVersion
from signalcast.ops import summary
from signalcast.ops.cluster import cluster_state, workers_per_queue
from signalcast.pipeline.ingest import open_gaps
from signalcast.tasks.app import QUEUES


def collect_status(engine: Engine, settings: Settings, now: datetime | None = None
                   ) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    data = _collect_tables(engine, settings)
    data["cluster"] = collect_cluster(engine, settings, now)
    return data


def collect_cluster(engine: Engine, settings: Settings, now: datetime) -> dict[str, Any]:
    """:func:`cluster_state` plus what a reader judges it by: workers per queue, the last
    tick's age and whether it is late. A tick is recorded under the open time of the candle it
    predicts, so right after a tick its age is one timeframe and just before the next one two:
    late means older than two of the shortest timeframe plus the predict delay and the misfire
    grace."""
    if settings.env.broker_url is not None:
        from signalcast.tasks.app import configure

        configure(settings)  # the broadcast ping goes through the configured broker
    state = cluster_state(engine, settings)
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


def _collect_tables(engine: Engine, settings: Settings) -> dict[str, Any]:
    with session_scope(engine) as session:
        assets = []
        for cfg in settings.assets:
            newest = last_candle_time(session, cfg.symbol, cfg.timeframe)
            champions = session.exec(select(  # columns only: artifacts stay in the database
                ModelVersion.target, ModelVersion.family, ModelVersion.version,
                ModelVersion.metrics).where(
                ModelVersion.asset == cfg.symbol, ModelVersion.role == "champion")).all()
            assets.append({
                "asset": cfg.symbol, "timeframe": cfg.timeframe,
                "last_candle": newest.isoformat() if newest else None,
                "gaps": open_gaps(session, cfg.symbol, cfg.timeframe),
                "champions": {m.target: f"{m.family} v{m.version} "
                              f"(AUC {m.metrics.get('auc') or float('nan'):.3f})"
                              for m in champions},
            })
        return {
            "database": settings.redacted()["environment"]["database_url"],
            "assets": assets,
            "alerts": summary.alert_counts(session),
            "tasks": summary.task_counts(session),
            "rows": summary.table_counts(session),
            "targets": [vars(s) | {"hit_rate": s.hit_rate}
                        for s in summary.target_summaries(session)],
        }


def render_status(data: dict[str, Any], console: Console, brief: bool = False) -> None:
    """The status as a few tables, problems first and coloured: a queue that waits with no
    worker, a late tick, a broker that does not answer, failed task runs."""
    if "cluster" in data:
        _render_cluster(data["cluster"], console, brief)
    table = Table(title="assets")
    for col in ("asset", "last closed candle", "champions", "open gaps"):
        table.add_column(col)
    for a in data["assets"]:
        champions = "\n".join(f"{t}: {c}" for t, c in sorted(a["champions"].items())) or \
            "[red]none: train one[/red]"
        table.add_row(escape(a["asset"]), a["last_candle"] or "[yellow]none[/yellow]",
                      champions, _gaps_cell(a.get("gaps", [])))
    console.print(table)
    if data["targets"]:
        results = Table(title="served predictions")
        for col in ("asset", "target", "predictions", "resolved", "hit rate", "alerts sent"):
            results.add_column(col, justify="left" if col in ("asset", "target") else "right")
        for t in data["targets"]:
            rate = "-" if t["hit_rate"] is None else f"{t['hit_rate']:.0%}"
            results.add_row(escape(t["asset"]), t["target"], str(t["predictions"]),
                            str(t["resolved"]), rate, str(t["alerts_sent"]))
        console.print(results)
    if not brief:
        console.print(f"alerts: {_counts_line(data['alerts'])}")
        _render_task_runs(data["tasks"], console)
        console.print(f"rows: {_counts_line(data['rows'])}")
    console.print(f"database: {escape(data['database'])}")


def _render_cluster(cluster: dict[str, Any], console: Console, brief: bool) -> None:
    if cluster["broker"] == "embedded":
        console.print("cluster: [bold]embedded[/bold] (no SIGNALCAST_BROKER_URL): tasks run "
                      "inside the command that starts them")
    elif cluster["broker_error"]:
        console.print(f"cluster: [red]Redis does not answer[/red]: "
                      f"{escape(cluster['broker_error'])}")
    else:
        console.print(f"cluster: redis, {len(cluster['workers'])} worker(s) answering")
    console.print(f"last tick: {_tick_cell(cluster)}")
    failed = cluster.get("failed_tasks") or {}
    if failed:
        console.print("[red]failed task runs[/red]: " + ", ".join(
            f"{name} {count}" for name, count in sorted(failed.items())))
    if cluster["broker"] == "embedded" or cluster["broker_error"]:
        return
    queues = Table(title="queues")
    for col in ("queue", "workers", "waiting", "note"):
        queues.add_column(col, justify="right" if col in ("workers", "waiting") else "left")
    per_queue = cluster.get("workers_per_queue") or {}
    for queue in QUEUES:
        workers, waiting = per_queue.get(queue, 0), cluster["queues"].get(queue, 0)
        queues.add_row(queue, str(workers), str(waiting), _queue_note(queue, workers, waiting))
    console.print(queues)
    if not brief and cluster["workers"]:
        console.print("workers: " + "; ".join(
            f"{escape(host)} ({', '.join(qs)})" for host, qs in sorted(cluster["workers"].items())))


def _queue_note(queue: str, workers: int, waiting: int) -> str:
    if workers == 0:
        return "[red]no worker consumes it[/red]" if waiting else "[yellow]no worker[/yellow]"
    if queue == "alerts" and workers > 1:
        return "[yellow]more than one consumer: Telegram limits are kept per process[/yellow]"
    if waiting > 10 * workers:
        return "[yellow]backlog: add workers[/yellow]"
    return ""


def _tick_cell(cluster: dict[str, Any]) -> str:
    if not cluster["last_tick"]:
        return "[yellow]none yet[/yellow]"
    age = cluster.get("last_tick_age_seconds")
    when = "candle " + cluster["last_tick"][:16].replace("T", " ") + " UTC"
    if age is None:
        return when
    text = f"{when} ({_ago(age)})"
    return f"[yellow]{text}: late, is a scheduler running?[/yellow]" if cluster.get(
        "tick_late") else text


def _ago(seconds: float) -> str:
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items()) or "none"


def _render_task_runs(tasks: dict[str, dict[str, int]], console: Console) -> None:
    if not tasks:
        console.print("task runs: none")
        return
    statuses = sorted({status for counts in tasks.values() for status in counts})
    table = Table(title="task runs")
    table.add_column("task")
    for status in statuses:
        table.add_column(status, justify="right")
    for name, counts in sorted(tasks.items()):
        cells = [str(counts.get(status, 0)) for status in statuses]
        if counts.get("failed"):
            cells[statuses.index("failed")] = f"[red]{counts['failed']}[/red]"
        table.add_row(name, *cells)
    console.print(table)


def _gaps_cell(gaps: list[dict[str, Any]], show: int = 3) -> str:
    """'none', or each open gap as 'first .. last (N)', at most ``show`` of them."""
    if not gaps:
        return "none"
    lines = [f"{g['first'][:16]} .. {g['last'][:16]} ({g['missing']})" for g in gaps[:show]]
    if len(gaps) > show:
        total = sum(g["missing"] for g in gaps)
        lines.append(f"... {len(gaps)} gaps, {total} candles in all")
    return "\n".join(lines)
