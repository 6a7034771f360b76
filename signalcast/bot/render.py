"""Service answers -> Telegram HTML replies. Every dynamic value is escaped."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import partial
from html import escape as _escape
from typing import Any

from signalcast.alerts.subscriptions import ChatSettings
from signalcast.db.tables import ModelEvent
from signalcast.lifecycle.admin import ModelInfo
from signalcast.lifecycle.retrain import RetrainProgress

escape = partial(_escape, quote=False)  # quotes need no escaping in Telegram HTML text
MESSAGE_LIMIT = 4096
_STATE_MARKS = {"queued": "queued", "running": "running", "done": "done", "failed": "FAILED"}


def _clip(lines: Sequence[str], limit: int = MESSAGE_LIMIT - 96) -> str:
    """Join lines, replacing those past Telegram's message limit by a count."""
    out, used = [], 0
    for i, line in enumerate(lines):
        if used + len(line) + 1 > limit:
            out.append(f"... {len(lines) - i} more lines")
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out)


def _when(stamp: datetime | None) -> str:
    return "never" if stamp is None else f"{stamp.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _ago(stamp: datetime, now: datetime) -> str:
    minutes = int((now - stamp).total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min ago"
    return f"{minutes // 60} h ago" if minutes < 48 * 60 else f"{minutes // 1440} days ago"


def help_text(commands: Iterable[Any], can_admin: bool) -> str:
    lines = ["<b>signalcast bot</b>"]
    for command in commands:
        if command.admin and not can_admin:
            continue
        lines.append(f"{escape(command.usage)}: {escape(command.description)}")
    if not can_admin:
        lines.append("<i>Admins may also retrain, promote, roll back and pause.</i>")
    return "\n".join(lines)


def usage(command: Any, problem: str) -> str:
    return f"Usage: <code>{escape(command.usage)}</code>\n{escape(problem)}"


def status(data: dict[str, Any], now: datetime) -> str:
    """The status of :func:`signalcast.ops.status.collect_status`, the same data the CLI
    shows, in a few lines."""
    cluster = data["cluster"]
    lines = ["<b>signalcast status</b>"]
    if cluster["broker"] == "embedded":
        lines.append("Workers: no broker configured (embedded mode)")
    elif not cluster["broker_error"]:
        names = ", ".join(sorted(cluster["workers"])) or "none answered"
        lines.append(f"Workers: {len(cluster['workers'])} ({escape(names)})")
        lines.append("Queues: " + ", ".join(f"{escape(q)} {n}"
                                             for q, n in cluster["queues"].items()))
    tick = datetime.fromisoformat(cluster["last_tick"]) if cluster["last_tick"] else None
    lines.append(f"Last tick: {_when(tick)}" + (f" ({_ago(tick, now)})" if tick else ""))
    lines.append(f"Champions: {data['champions']} of {data['expected_champions']} "
                 f"(asset x target) | running tasks: {data['running_tasks']}")
    gates = [(a["asset"], t, g) for a in data["assets"] for t, g in a.get("gates", {}).items()]
    held = [(a, t, g) for a, t, g in gates if not g["open"]]
    if gates:
        lines.append(f"Signal alerts: {len(gates) - len(held)} of {len(gates)} targets show "
                     "skill (walk-forward Brier skill vs base rate, lower bound > 0)")
    for asset, target, gate in held[:6]:
        wf = gate.get("walk_forward") or {}
        skill = wf.get("brier_skill")
        figure = "" if skill is None else f" skill {skill:+.3f} (low {wf['skill_lower']:+.3f})"
        lines.append(f"  held {escape(asset)} {escape(target)}:{figure}")
    alerts = data["alerts_today"]
    lines.append("Alerts today: " + (", ".join(f"{n} {escape(s)}" for s, n in
                                               sorted(alerts.items())) or "none"))
    if cluster["broker_error"]:
        lines.append(f"<i>broker: {escape(cluster['broker_error'])}</i>")
    return "\n".join(lines)


def signals(rows: list[dict[str, Any]]) -> str:
    lines = ["<b>Latest signals</b>"]
    for row in rows:
        name = f"{escape(row['asset'])} {escape(row['target'])}"
        if row["candle_time"] is None:
            lines.append(f"{name}: no prediction yet")
            continue
        flag = " <b>alert</b>" if row["alert"] else ""
        lines.append(f"{name}: {row['direction']} {row['probability']:.0%} "
                     f"({escape(row['band'])}){flag} | {escape(row['model'])} | "
                     f"{_when(row['candle_time'])}")
    return _clip(lines)


def models(rows: list[ModelInfo], per_target: int = 4) -> str:
    if not rows:
        return "No models trained yet. An admin can /retrain."
    lines = ["<b>Models</b>"]
    shown: dict[tuple[str, str], int] = {}
    for m in rows:
        key = (m.asset, m.target)
        if key not in shown:
            lines.append(f"<b>{escape(m.asset)} {escape(m.target)}</b>")
            shown[key] = 0
        shown[key] += 1
        if shown[key] > per_target:
            continue
        auc, brier = m.metrics.get("auc"), m.metrics.get("brier")
        stats = ", ".join(part for part in (
            f"AUC {auc:.3f}" if isinstance(auc, int | float) else "",
            f"Brier {brier:.3f}" if isinstance(brier, int | float) else "") if part)
        purged = "" if m.has_artifact else ", artifact purged"
        lines.append(f"  {escape(m.label)} {escape(m.role)}: {stats or 'no metrics'}"
                     f"{purged}, {m.created_at:%Y-%m-%d}")
    return _clip(lines)


def model_event(event: ModelEvent) -> str:
    name = f"{escape(event.asset)} {escape(event.target)}"
    to, old = escape(event.to_label or "?"), escape(event.from_label or "none")
    if event.event == "rolled_back":
        text = f"{name}: rolled back to {to} (from {old})."
    else:
        text = f"{name}: {to} is the champion now (was {old})."
    return f"{text}\nRecorded as model event #{event.id}."


def history(events: list[ModelEvent]) -> str:
    if not events:
        return "No model events recorded."
    lines = [f"<b>Model events {escape(events[0].asset)} {escape(events[0].target)}</b>"]
    for e in events:
        lines.append(f"#{e.id} {_when(e.created_at)} {escape(e.event)}: "
                     f"{escape(e.from_label or 'none')} -> {escape(e.to_label or 'none')} "
                     f"by {escape(e.actor)}" + (f" ({escape(e.reason)})" if e.reason else ""))
    return _clip(lines)


def chat(settings: ChatSettings) -> str:
    if settings.paused:
        return "Alerts to this chat are paused. /resume to receive them again."
    if not settings.receives:
        return "This chat receives no alerts. /subscribe to receive them."
    kinds = ", ".join(f"{escape(k)} {escape(m)}" for k, m in settings.kinds.items())
    lines = [f"This chat receives: {kinds}"]
    if settings.muted_assets:
        lines.append("Not for: " + ", ".join(map(escape, settings.muted_assets)))
    if settings.muted_targets:
        lines.append("Not for targets: " + ", ".join(map(escape, settings.muted_targets)))
    return "\n".join(lines)


def retrain(progress: RetrainProgress, *, elapsed_s: float | None = None,
            gave_up_after_min: float | None = None) -> str:
    """The /retrain reply: one line per (target, family), then a summary line. The text only
    changes when a task's state does (the bot edits only on change)."""
    job = progress.job
    lines = [f"<b>Retrain {escape(job.tasks[0].asset)}</b>" if job.tasks else "<b>Retrain</b>"]
    for s in progress.states:
        detail = f": {escape(s.detail)}" if s.detail else ""
        lines.append(f"{escape(s.task.target)} {escape(s.task.family)}: "
                     f"{_STATE_MARKS[s.state]}{detail}")
    done, failed = progress.count("done"), progress.count("failed")
    if elapsed_s is not None:
        lines.append(f"<b>Finished in {elapsed_s:.0f} s: {done} trained, {failed} failed.</b>")
    elif gave_up_after_min is not None:
        lines.append(f"<i>Stopped following after {gave_up_after_min:g} min; the tasks go on. "
                     "/models shows the result.</i>")
    else:
        lines.append(f"<i>{done + failed} of {len(progress.states)} finished</i>")
    return _clip(lines)
