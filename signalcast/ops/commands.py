"""What the bot's and the CLI's commands do, as plain functions that return data.

The Telegram bot (``signalcast.bot``) and the command line only parse arguments, call these and
render the answer; names are validated here, so a wrong one raises
:class:`~signalcast.core.errors.UnknownNameError` listing the valid choices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select

from signalcast.alerts.rules import (
    alert_chats,
    chat_prefs,
    confidence_band,
    delivery_mode,
)
from signalcast.config import Settings
from signalcast.config.settings import ALERT_KINDS
from signalcast.core.errors import ConfigError, UnknownNameError
from signalcast.db.engine import session_scope
from signalcast.db.tables import (
    AlertOutbox,
    ChatPref,
    ModelVersion,
    Prediction,
    ScheduledEnqueue,
    TaskRun,
    utcnow,
)
from signalcast.lifecycle.admin import list_models  # noqa: F401  (part of this API)

QUEUE_NAMES = ("predict", "train", "alerts")
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")  # kombu's redis priority lists


# -- /status -----------------------------------------------------------------------------------


def status_summary(engine: Engine, settings: Settings, *, celery_app: Any = None,
                   timeout: float = 1.0, now: datetime | None = None) -> dict[str, Any]:
    """Workers (a ping) and queue depths when a broker is configured, the last tick, the
    champions and today's alerts by status. Unreachable services are reported, not raised."""
    now = now or utcnow()
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    out: dict[str, Any] = {"broker": settings.env.broker_url is not None, "workers": None,
                           "queues": None, "problems": []}
    if settings.env.broker_url is not None:
        try:
            replies = celery_app.control.ping(timeout=timeout) if celery_app else []
            out["workers"] = sorted(name for reply in replies for name in reply)
        except Exception as exc:  # the bot must answer /status even when Redis is down
            out["problems"].append(f"workers: {type(exc).__name__}: {exc}")
        try:
            out["queues"] = queue_depths(settings.env.broker_url, timeout)
        except Exception as exc:
            out["problems"].append(f"queues: {type(exc).__name__}: {exc}")
    with session_scope(engine, readonly=True) as session:
        out["last_tick"] = session.exec(select(func.max(ScheduledEnqueue.enqueued_at)).where(
            ScheduledEnqueue.job.like("tick:%"))).one()
        out["alerts_today"] = dict(session.exec(
            select(AlertOutbox.status, func.count()).where(AlertOutbox.created_at >= day)
            .group_by(AlertOutbox.status)).all())
        out["champions"] = session.exec(select(func.count()).select_from(ModelVersion).where(
            ModelVersion.role == "champion")).one()
        out["running_tasks"] = session.exec(select(func.count()).select_from(TaskRun).where(
            TaskRun.status == "running")).one()
    out["expected_champions"] = len(settings.assets) * len(settings.targets)
    return out


def queue_depths(broker_url: str, timeout: float = 1.0) -> dict[str, int]:
    """Messages waiting per queue (Redis LLEN of kombu's list keys)."""
    import redis

    client = redis.Redis.from_url(broker_url, socket_timeout=timeout,
                                  socket_connect_timeout=timeout)
    try:
        return {name: sum(client.llen(name + suffix) for suffix in _PRIORITY_SUFFIXES)
                for name in QUEUE_NAMES}
    finally:
        client.close()


# -- /signals ----------------------------------------------------------------------------------


def recent_signals(engine: Engine, settings: Settings,
                   asset: str | None = None) -> list[dict[str, Any]]:
    """The newest served prediction per (asset, target): direction, probability, band and
    whether it reached the alert threshold."""
    assets = [settings.asset(asset)] if asset else list(settings.assets)
    out = []
    with session_scope(engine, readonly=True) as session:
        for cfg in assets:
            for target in settings.targets:
                row = session.exec(select(Prediction, ModelVersion).join(ModelVersion).where(
                    Prediction.asset == cfg.symbol, Prediction.target == target.key,
                    Prediction.served).order_by(Prediction.candle_time.desc()).limit(1)).first()
                if row is None:
                    out.append({"asset": cfg.symbol, "target": target.key, "candle_time": None})
                    continue
                pred, version = row
                direction, prob = ("UP", pred.prob_up) if pred.prob_up >= 0.5 else (
                    "DOWN", 1 - pred.prob_up)
                out.append({
                    "asset": cfg.symbol, "target": target.key, "candle_time": pred.candle_time,
                    "direction": direction, "probability": prob,
                    "band": confidence_band(prob, target.alert_threshold,
                                            settings.alerts.high_band_margin),
                    "alert": prob >= target.alert_threshold,
                    "model": f"{version.family} v{version.version}"})
    return out


# -- /retrain ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrainTask:
    task_id: str
    asset: str
    target: str
    family: str


@dataclass
class RetrainJob:
    started_at: datetime
    tasks: list[RetrainTask]


@dataclass(frozen=True)
class TaskState:
    task: RetrainTask
    state: str  # queued | running | done | failed
    detail: str = ""


@dataclass
class RetrainProgress:
    job: RetrainJob
    states: list[TaskState] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(s.state == state for s in self.states)

    @property
    def finished(self) -> bool:
        return all(s.state in ("done", "failed") for s in self.states)


def start_retrain(settings: Settings, asset: str, target: str | None = None,
                  family: str | None = None, *, now: datetime | None = None) -> RetrainJob:
    """Validate the names and enqueue the train tasks (one per target and family) on the
    broker's ``train`` queue; the task ids are those of ``train_signatures``."""
    from signalcast.models.registry import families
    from signalcast.scheduler.jobs import train_signatures

    symbol = settings.asset(asset).symbol
    key = settings.target(target).key if target else None
    if family is not None and family not in families():
        raise UnknownNameError("model family", family, families())
    if settings.env.broker_url is None:
        raise ConfigError("retraining from here needs SIGNALCAST_BROKER_URL and a worker on the "
                          "train queue; on one machine use `signalcast train`")
    now = now or utcnow()
    signatures = train_signatures(settings, now, assets=[symbol],
                                  targets=None if key is None else [key],
                                  families=None if family is None else [family])
    tasks = []
    for signature in signatures:
        signature.apply_async()
        a, t, f, _ = signature.args
        tasks.append(RetrainTask(signature.options["task_id"], a, t, f))
    return RetrainJob(started_at=now, tasks=tasks)


def retrain_progress(engine: Engine, job: RetrainJob, *,
                     still_retrying: Callable[[str], bool] | None = None) -> RetrainProgress:
    """Each train task's state from its TaskRun row (no row yet: queued). A failed run that
    ``still_retrying(task_id)`` says will be retried shows as running."""
    ids = [t.task_id for t in job.tasks]
    with session_scope(engine, readonly=True) as session:
        runs = {r.task_id: r for r in session.exec(
            select(TaskRun).where(TaskRun.task_id.in_(ids))).all()}
    progress = RetrainProgress(job)
    for task in job.tasks:
        run = runs.get(task.task_id)
        if run is None:
            progress.states.append(TaskState(task, "queued"))
        elif run.status == "done":
            metrics = run.result.get("metrics") or {}
            auc = metrics.get("auc")
            detail = f"v{run.result.get('version')}" + (
                f", AUC {auc:.3f}" if isinstance(auc, int | float) else "")
            role = run.result.get("role")
            progress.states.append(TaskState(task, "done", f"{detail} ({role})" if role
                                             else detail))
        elif run.status == "failed" and not (still_retrying and still_retrying(task.task_id)):
            error = (run.error or "").splitlines()[0] if run.error else "failed"
            progress.states.append(TaskState(task, "failed", error[:200]))
        else:
            progress.states.append(TaskState(task, "running", run.progress or ""))
    return progress


# -- /pause, /resume, /subscribe, /unsubscribe -------------------------------------------------


@dataclass(frozen=True)
class ChatSettings:
    chat_id: str
    receives: bool  # a recipient at all (configured or enrolled, not opted out)
    paused: bool
    kinds: dict[str, str]  # kind -> on | silent | off (effective)
    muted_assets: list[str]
    muted_targets: list[str]


def chat_settings(engine: Engine, settings: Settings, chat_id: str) -> ChatSettings:
    with session_scope(engine, readonly=True) as session:
        pref = chat_prefs(session).get(chat_id)
    configured = chat_id in alert_chats(settings)
    receives = (pref.enrolled if pref is not None and pref.enrolled is not None
                else configured)
    return ChatSettings(
        chat_id=chat_id, receives=bool(receives), paused=bool(pref and pref.paused),
        kinds={kind: delivery_mode(_unpaused(pref), settings, kind) for kind in ALERT_KINDS},
        muted_assets=list(pref.muted_assets) if pref else [],
        muted_targets=list(pref.muted_targets) if pref else [])


def pause_alerts(engine: Engine, settings: Settings, chat_id: str, actor: str) -> ChatSettings:
    """Hold back every alert to this chat (queued ones too) until :func:`resume_alerts`."""
    return _change(engine, settings, chat_id, actor, paused=True)


def resume_alerts(engine: Engine, settings: Settings, chat_id: str, actor: str) -> ChatSettings:
    return _change(engine, settings, chat_id, actor, paused=False)


def subscribe(engine: Engine, settings: Settings, chat_id: str, items: Iterable[str],
              actor: str) -> ChatSettings:
    """Receive alerts here; with items, receive these assets/targets again and set kinds
    (``model`` or ``summary:silent``). Unknown items raise UnknownNameError."""
    assets, targets, kinds = _parse_items(settings, items, default_mode="on")
    return _change(engine, settings, chat_id, actor, enrolled=True, unmute_assets=assets,
                   unmute_targets=targets, kinds=kinds)


def unsubscribe(engine: Engine, settings: Settings, chat_id: str, items: Iterable[str],
                actor: str) -> ChatSettings:
    """Without items: receive no alerts here. With items: stop these assets, targets or
    kinds."""
    items = list(items)
    assets, targets, kinds = _parse_items(settings, items, default_mode="off")
    if not items:
        return _change(engine, settings, chat_id, actor, enrolled=False)
    return _change(engine, settings, chat_id, actor, mute_assets=assets, mute_targets=targets,
                   kinds={kind: "off" for kind in kinds})


def _parse_items(settings: Settings, items: Iterable[str],
                 default_mode: str) -> tuple[list[str], list[str], dict[str, str]]:
    """Sort ``BTC/USDT``, ``2pct_72``, ``summary`` and ``summary:silent`` into assets, targets
    and kind modes."""
    assets, targets, kinds = [], [], {}
    symbols = {a.symbol.upper(): a.symbol for a in settings.assets}
    keys = {t.key.lower(): t.key for t in settings.targets}
    for item in items:
        name, _, mode = item.partition(":")
        if name.lower() in ALERT_KINDS and (mode or default_mode) in ("on", "silent", "off"):
            kinds[name.lower()] = mode.lower() or default_mode
        elif item.upper() in symbols:
            assets.append(symbols[item.upper()])
        elif item.lower() in keys:
            targets.append(keys[item.lower()])
        else:
            raise UnknownNameError("asset, target or alert kind", item,
                                   [*symbols.values(), *keys.values(), *ALERT_KINDS])
    return assets, targets, kinds


def _unpaused(pref: ChatPref | None) -> ChatPref | None:
    """The preferences as if not paused and enrolled (to show each kind's own mode)."""
    if pref is None:
        return None
    return ChatPref(chat_id=pref.chat_id, kinds=pref.kinds, muted_assets=[], muted_targets=[])


def _change(engine: Engine, settings: Settings, chat_id: str, actor: str, *,
            paused: bool | None = None, enrolled: bool | None = None,
            kinds: dict[str, str] | None = None, mute_assets: Iterable[str] = (),
            unmute_assets: Iterable[str] = (), mute_targets: Iterable[str] = (),
            unmute_targets: Iterable[str] = ()) -> ChatSettings:
    with session_scope(engine) as session:
        pref = session.get(ChatPref, chat_id, with_for_update=True) or ChatPref(chat_id=chat_id)
        if paused is not None:
            pref.paused = paused
        if enrolled is not None:
            pref.enrolled = enrolled
        # assign new objects: the JSON columns are not tracked for in-place changes
        pref.kinds = {**pref.kinds, **(kinds or {})}
        pref.muted_assets = sorted(set(pref.muted_assets) - set(unmute_assets)
                                   | set(mute_assets))
        pref.muted_targets = sorted(set(pref.muted_targets) - set(unmute_targets)
                                    | set(mute_targets))
        pref.updated_at, pref.updated_by = utcnow(), actor[:80]
        session.add(pref)
    return chat_settings(engine, settings, chat_id)
