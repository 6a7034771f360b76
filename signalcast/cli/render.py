"""``signalcast status`` on a terminal: the one status (:func:`signalcast.ops.status.
collect_status`) as a few rich tables, problems first and coloured."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from signalcast.core.queues import QUEUES


def render_status(data: dict[str, Any], console: Console, brief: bool = False) -> None:
    """The status as a few tables, problems first and coloured: a queue that waits with no
    worker, a late tick, a broker that does not answer, failed task runs."""
    if "cluster" in data:
        _render_cluster(data["cluster"], console, brief)
    table = Table(title="assets")
    for col in ("asset", "last closed candle", "champions", "open gaps"):
        table.add_column(col)
    for a in data["assets"]:
        champions = "\n".join(f"{t}: {escape(c)}" for t, c in sorted(a["champions"].items())) \
            or \
            "[red]none: train one[/red]"
        table.add_row(escape(a["asset"]), a["last_candle"] or "[yellow]none[/yellow]",
                      champions, _gaps_cell(a.get("gaps", [])))
    console.print(table)
    if data["targets"]:
        results = Table(title="served predictions")
        for col in ("asset", "target", "predictions", "resolved", "hit rate", "always maj",
                    "signals sent"):
            results.add_column(col, justify="left" if col in ("asset", "target") else "right")
        for t in data["targets"]:
            rate = "-" if t["hit_rate"] is None else f"{t['hit_rate']:.0%}"
            majority = t.get("majority_rate")
            results.add_row(escape(t["asset"]), t["target"], str(t["predictions"]),
                            str(t["resolved"]), rate,
                            "-" if majority is None else f"{majority:.0%}",
                            str(t["alerts_sent"]))
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
