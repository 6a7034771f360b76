"""Alert rules: when something becomes an alert, what it says, and which chats receive it.

Every alert is a row of the outbox, keyed (chat, asset, target, candle time, kind), so queuing
the same alert twice inserts nothing. The callers queue inside their own transaction:

- ``signal``: the prediction service, for a probability at or above the target's threshold;
- ``outcome``: outcome resolution, when a candle that was signalled resolves (hit/miss/expired);
- ``summary``: the daily scheduler job (hit rate, live AUC and the skill gate per asset and
  target, each beside its benchmark; weekly, with a reliability chart), built in
  :mod:`signalcast.alerts.summary` and queued through :func:`queue_alert`;
- ``model``: a champion change (training, promotion, rollback) or a model fallback/drift;
- ``system``: the health check (a silent worker or scheduler, repeated task failures).

A chat receives a kind ``on``, ``silent`` (no notification sound) or not at all (``off``), from
``alerts.kinds`` unless the chat changed it (:class:`~signalcast.db.tables.ChatPref`). The same
rule is asked again when the alert is sent, so a /pause also holds back alerts already queued.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from signalcast.alerts.gate import GateState, signal_gate
from signalcast.config import Settings, TargetConfig
from signalcast.core.timeframes import timeframe_to_timedelta, utc
from signalcast.core.versions import label
from signalcast.db.tables import (
    AlertLastSent,
    AlertOutbox,
    ChatPref,
    ModelVersion,
    Outcome,
    ScheduledEnqueue,
    TaskRun,
    WorkerHeartbeat,
    utcnow,
)
from signalcast.db.upsert import insert_ignore, upsert
from signalcast.features import DOWN, UP
from signalcast.notifier import CONSOLE_CHAT

SYSTEM = "system"  # the asset column of system alerts
ALL = "*"  # the asset column of summary alerts


# -- who receives what -------------------------------------------------------------------------


def alert_chats(settings: Settings) -> list[str]:
    """The configured chats: the console (``alerts.console``), with a Telegram token
    ``SIGNALCAST_TELEGRAM_CHAT_IDS``, and the ``notifiers`` endpoints (``webhook:<name>``,
    ``discord:<name>``)."""
    chats = [CONSOLE_CHAT] if settings.alerts.console else []
    if settings.env.telegram_token is not None:
        chats += settings.telegram_chat_ids
    return chats + settings.notifiers.chat_ids


def delivery_mode(pref: ChatPref | None, settings: Settings, kind: str,
                  asset: str | None = None, target: str | None = None) -> str:
    """``on``, ``silent`` or ``off``: how a chat with ``pref`` receives an alert of ``kind``."""
    default = settings.alerts.kinds.get(kind, "on")
    if pref is None:
        return default
    if pref.paused or pref.enrolled is False:
        return "off"
    if asset in pref.muted_assets or target in pref.muted_targets:
        return "off"
    return pref.kinds.get(kind, default)


def chat_prefs(session: Session) -> dict[str, ChatPref]:
    return {pref.chat_id: pref for pref in session.exec(select(ChatPref)).all()}


def recipients(session: Session, settings: Settings, kind: str, asset: str | None = None,
               target: str | None = None) -> list[str]:
    """Chats that receive this alert now: configured chats plus chats enrolled with
    /subscribe (those need a Telegram token too), minus chats for which it is ``off``."""
    prefs = chat_prefs(session)
    chats = [chat for chat in alert_chats(settings)
             if chat != CONSOLE_CHAT or kind in settings.alerts.console_kinds]
    if settings.env.telegram_token is not None:
        chats += sorted(c for c, p in prefs.items() if p.enrolled and c not in chats)
    return [chat for chat in chats
            if delivery_mode(prefs.get(chat), settings, kind, asset, target) != "off"]


def queue_alert(session: Session, settings: Settings, kind: str, asset: str, target: str,
                at: datetime, payload: dict[str, Any]) -> int:
    """One outbox row per receiving chat; returns how many were new."""
    real_asset = None if asset in (SYSTEM, ALL) else asset
    return sum(int(insert_ignore(session, AlertOutbox, {
        "chat_id": chat, "asset": asset[:40], "target": target[:40], "candle_time": at,
        "kind": kind, "payload": payload,
    }, keys=["chat_id", "asset", "target", "candle_time", "kind"]))
        for chat in recipients(session, settings, kind, real_asset, target))


# -- signal ------------------------------------------------------------------------------------


def confidence_band(probability: float, threshold: float, margin: float) -> str:
    """``high`` from ``threshold + margin``, ``medium`` from ``threshold``, else ``low``.

    >>> confidence_band(0.81, 0.7, 0.1), confidence_band(0.75, 0.7, 0.1)
    ('high', 'medium')
    """
    if probability >= threshold + margin - 1e-9:
        return "high"
    return "medium" if probability >= threshold - 1e-9 else "low"


def signal_payload(asset: str, timeframe: str, target: TargetConfig, version: ModelVersion,
                   candle_time: datetime, price: float, p_up: float,
                   p_down: float | None = None) -> dict | None:
    """The alert for these unconditional probabilities (``p_up``: the up level is touched first
    within the horizon, ``p_down``: the down level is; None: ``1 - p_up``), or None when
    neither direction reaches the threshold. The alert states its direction's unconditional
    chance, so an outcome where neither level is touched is a miss."""
    p_down = 1.0 - p_up if p_down is None else p_down
    direction, prob = ("UP", p_up) if p_up >= p_down else ("DOWN", p_down)
    if prob < target.alert_threshold:
        return None
    return {
        "asset": asset, "target": target.key, "pct": target.pct, "horizon": target.horizon,
        "timeframe": timeframe, "direction": direction, "probability": round(prob, 4),
        "threshold": target.alert_threshold, "model": label(version),
        "model_version_id": getattr(version, "id", None),
        "p_up": round(p_up, 4), "p_down": round(p_down, 4),
        "candle_time": candle_time.isoformat(), "price": price,
        "up_level": price * (1 + target.pct), "down_level": price * (1 - target.pct),
        "fallback": None, "conflict": False,
    }


def queue_signal_alerts(session: Session, settings: Settings, payload: dict, *,
                        gate: GateState | None = None) -> int:
    """Queue a signal, with its confidence band, for every receiving chat for which it is not a
    repeat; returns how many rows were new (0 when this prediction was queued before).

    Nothing is queued while the serving model's skill is not shown (:mod:`.gate`: the stored
    walk-forward gate and the live check; ``gate`` when the caller already asked it).

    A repeat is the same direction and band as the last signal alerted to that chat for this
    (asset, target), within that signal's horizon (``alerts.debounce``). The last alerted
    signal is stored per (chat, asset, target) in the same transaction.
    """
    asset, target = payload["asset"], payload["target"]
    gate = gate or signal_gate(session, settings, asset, target, payload.get("model_version_id"))
    if not gate.open:
        return 0
    candle_time = utc(datetime.fromisoformat(payload["candle_time"]))
    band = confidence_band(payload["probability"], payload["threshold"],
                           settings.alerts.high_band_margin)
    payload = {**payload, "band": band}
    queued = 0
    for chat in recipients(session, settings, "signal", asset, target):
        last = session.get(AlertLastSent, (chat, asset, target))
        if settings.alerts.debounce and is_repeat(last, payload["direction"], band, candle_time):
            continue
        if not insert_ignore(session, AlertOutbox, {
                "chat_id": chat, "asset": asset, "target": target, "candle_time": candle_time,
                "kind": "signal", "payload": payload},
                keys=["chat_id", "asset", "target", "candle_time", "kind"]):
            continue
        queued += 1
        if last is None or last.candle_time < candle_time:
            upsert(session, AlertLastSent, [{
                "chat_id": chat, "asset": asset, "target": target,
                "direction": payload["direction"], "band": band, "candle_time": candle_time,
                "until": candle_time + signal_window(payload), "sent_at": utcnow()}],
                keys=["chat_id", "asset", "target"],
                update=["direction", "band", "candle_time", "until", "sent_at"])
    return queued


def is_repeat(last: AlertLastSent | None, direction: str, band: str,
              candle_time: datetime) -> bool:
    """True when ``last`` already told the chat this: same direction and band, and the new
    candle falls inside the last signal's horizon."""
    return (last is not None and last.direction == direction and last.band == band
            and last.candle_time < candle_time < last.until)


def signal_window(payload: Mapping[str, Any]) -> timedelta:
    """How long a signal stands: its horizon in candles of its timeframe."""
    return timeframe_to_timedelta(payload["timeframe"]) * int(payload["horizon"])


# -- outcome -----------------------------------------------------------------------------------


def outcome_result(direction: str, label: int) -> str:
    """``hit`` (the signalled level was touched first), ``miss`` (the other one was) or
    ``expired`` (neither within the horizon). The alert stated an unconditional chance, so an
    expired outcome counts as a miss (:func:`is_hit`; the outcome alert says so)."""
    if label not in (UP, DOWN):
        return "expired"
    return "hit" if (label == UP) == (direction.upper() == "UP") else "miss"


def is_hit(result: str) -> bool:
    """Only ``hit`` is a hit: ``miss`` and ``expired`` are both misses of the stated chance."""
    return result == "hit"


def queue_outcome_alerts(session: Session, settings: Settings,
                         outcomes: Sequence[Outcome | Mapping[str, Any]]) -> int:
    """Tell each chat that was sent (or will be sent) the signal of an outcome's candle how it
    ended. Called by outcome resolution right after the outcome rows are inserted; one read of
    the signals for all of them."""
    rows = [_outcome_fields(outcome) for outcome in outcomes]
    if not rows:
        return 0
    order = {(row["asset"], row["target"], row["candle_time"]): i for i, row in enumerate(rows)}
    signals = session.exec(select(AlertOutbox).where(
        AlertOutbox.kind == "signal", AlertOutbox.asset.in_({r["asset"] for r in rows}),
        AlertOutbox.target.in_({r["target"] for r in rows}),
        AlertOutbox.candle_time.in_({r["candle_time"] for r in rows}),
        AlertOutbox.status.in_(("pending", "sending", "sent")))).all()
    mine = sorted(((order[key], signal.id or 0, signal) for signal in signals
                   if (key := (signal.asset, signal.target, utc(signal.candle_time))) in order),
                  key=lambda item: item[:2])  # the outcomes' order, as one call each queued
    prefs = chat_prefs(session) if mine else {}
    queued = 0
    for i, _, signal in mine:
        outcome = rows[i]
        if delivery_mode(prefs.get(signal.chat_id), settings, "outcome", signal.asset,
                         signal.target) == "off":
            continue
        payload = {key: signal.payload.get(key) for key in (
            "asset", "target", "pct", "horizon", "timeframe", "direction", "probability",
            "band", "model", "candle_time", "price", "up_level", "down_level")}
        payload.update(result=outcome_result(str(payload["direction"]), outcome["label"]),
                       label=outcome["label"], bars=outcome["bars"],
                       resolved_at=outcome["resolved_at"].isoformat())
        queued += int(insert_ignore(session, AlertOutbox, {
            "chat_id": signal.chat_id, "asset": signal.asset, "target": signal.target,
            "candle_time": outcome["candle_time"], "kind": "outcome", "payload": payload,
        }, keys=["chat_id", "asset", "target", "candle_time", "kind"]))
    return queued


def _outcome_fields(outcome: Outcome | Mapping[str, Any]) -> dict[str, Any]:
    get = outcome.get if isinstance(outcome, Mapping) else lambda key: getattr(outcome, key)
    return {"asset": get("asset"), "target": get("target"),
            "candle_time": utc(get("candle_time")), "label": int(get("label")),
            "bars": int(get("bars")), "resolved_at": utc(get("resolved_at"))}


# -- model events ------------------------------------------------------------------------------


def queue_model_event_alert(session: Session, settings: Settings, event: str, asset: str,
                            target: str, *, to_label: str | None = None,
                            from_label: str | None = None, actor: str = "",
                            reason: str = "", stats: Mapping[str, Any] | None = None,
                            at: datetime) -> int:
    """A model event (``retrained``, ``promoted``, ``rolled_back``, ``fallback``, ``drift``)
    for chats that receive ``model`` alerts; ``at`` (the event time) keys it."""
    payload = {"event": event, "asset": asset, "target": target, "from": from_label,
               "to": to_label, "actor": actor, "reason": reason, "stats": dict(stats or {}),
               "at": utc(at).isoformat()}
    return queue_alert(session, settings, "model", asset, target, utc(at), payload)


# -- system health -----------------------------------------------------------------------------


def queue_system_alerts(session: Session, settings: Settings, now: datetime, *,
                        workers_seen: Iterable[str] | None = None) -> int:
    """Check the system and queue an alert per problem found (once per episode):

    - a worker seen before that has not answered for ``alerts.worker_silent_minutes``
      (``workers_seen``: the names that answered a ping now; None skips this check);
    - the scheduler: no candle tick enqueued for two candles of the shortest timeframe plus
      the misfire grace time;
    - ``alerts.task_failures`` or more failed runs of one task within the failure window.
    """
    now, cfg, queued = utc(now), settings.alerts, 0
    if workers_seen is not None:
        seen = sorted(set(workers_seen))
        if seen:
            upsert(session, WorkerHeartbeat,
                   [{"worker": w, "first_seen": now, "last_seen": now} for w in seen],
                   keys=["worker"], update=["last_seen"])
        silent_since = now - timedelta(minutes=cfg.worker_silent_minutes)
        for beat in session.exec(select(WorkerHeartbeat).where(
                WorkerHeartbeat.last_seen < silent_since)).all():
            queued += queue_alert(session, settings, "system", SYSTEM,
                                  f"worker:{beat.worker}", beat.last_seen,
                                  {"check": "worker_silent", "worker": beat.worker,
                                   "last_seen": beat.last_seen.isoformat()})

    last_tick = session.exec(select(func.max(ScheduledEnqueue.enqueued_at)).where(
        ScheduledEnqueue.job.like("tick:%"))).one()
    step = min(timeframe_to_timedelta(a.timeframe) for a in settings.assets)
    allowed = 2 * step + timedelta(seconds=settings.schedule.misfire_grace_seconds)
    if last_tick is not None and now - last_tick > allowed:
        queued += queue_alert(session, settings, "system", SYSTEM, "scheduler", last_tick,
                              {"check": "scheduler_silent", "last_tick": last_tick.isoformat()})

    window = timedelta(minutes=cfg.failure_window_minutes)
    bucket = datetime.fromtimestamp(now.timestamp() // window.total_seconds()
                                    * window.total_seconds(), now.tzinfo)
    failures = session.exec(select(TaskRun.name, func.count()).where(
        TaskRun.status == "failed", TaskRun.finished_at > now - window)
        .group_by(TaskRun.name)).all()
    for name, count in failures:
        if count < cfg.task_failures:
            continue
        last = session.exec(select(TaskRun.error).where(
            TaskRun.name == name, TaskRun.status == "failed")
            .order_by(TaskRun.finished_at.desc()).limit(1)).first()
        queued += queue_alert(session, settings, "system", SYSTEM, f"failures:{name}", bucket,
                              {"check": "task_failures", "task": name, "failures": count,
                               "minutes": cfg.failure_window_minutes,
                               "last_error": (last or "").splitlines()[0][:300] if last else ""})
    return queued
