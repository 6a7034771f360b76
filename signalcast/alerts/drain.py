"""Drain the alert outbox: each alert row is screened, claimed, sent once, and marked.

At-least-once is the best any transport offers (a send that timed out may have arrived), so the
outbox keeps the window small: a row is claimed by an atomic UPDATE before sending and marked
right after. A worker that dies mid-send leaves a claim that expires after ``CLAIM_LEASE`` and the
row is retried.

- ``RetryLater`` (429, 5xx, timeouts, an outage) reschedules the row with backoff (at least the
  ``retry_after`` Telegram asked for) and never gives up: an outage delays alerts, loses none. A
  short wait is waited out inside the drain; a long one ends it (the scheduler's
  ``drain_due_alerts`` job and the next tick drain again).
- ``PermanentFailure`` (400/403) marks the row ``failed`` at once: retrying cannot help.
- Rows a chat should no longer get (paused or the kind turned off since it was queued, the
  outcome of a signal that was not sent) are marked ``skipped`` with the reason. (Repeated
  signals are not queued at all: see ``alert_rules.queue_signal_alerts``.)

Telegram's rate limits are kept here, by the only consumer of the ``alerts`` queue: about one
message per second per chat, 20 per minute per group chat (negative ids), 30 per second overall
(:class:`SendRateLimiter`, seeded with the sends of the last minute from the database).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from signalcast.alerts.rules import ALL, SYSTEM, delivery_mode
from signalcast.config import Settings
from signalcast.config.settings import AlertsConfig
from signalcast.db.engine import session_scope
from signalcast.db.tables import AlertLastSent, AlertOutbox, ChatPref, utcnow
from signalcast.notifier.format import fit_caption, format_alert
from signalcast.notifier.telegram import PermanentFailure, RetryLater

log = logging.getLogger(__name__)
CLAIM_LEASE = timedelta(minutes=2)
MAX_BACKOFF_S = 300.0


class Transport(Protocol):
    html: bool

    def send(self, chat_id: str, text: str, *, photo: bytes | None = None): ...


@dataclass
class DrainResult:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    skipped: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "retry": self.retry, "failed": self.failed,
                "skipped": self.skipped}


# -- rate limits -------------------------------------------------------------------------------


def is_group_chat(chat_id: str) -> bool:
    """Group and channel ids are negative (or an @channel name)."""
    return chat_id.startswith(("-", "@"))


class SendRateLimiter:
    """How long to wait before the next message to a chat may go (times in epoch seconds)::

        limiter = SendRateLimiter(chat_interval=1.0, group_per_minute=20, global_per_second=30)
        limiter.record("42", 100.0)
        limiter.wait("42", 100.2)   # -> 0.8
    """

    def __init__(self, chat_interval: float, group_per_minute: int, global_per_second: int):
        self.chat_interval = chat_interval
        self.group_per_minute = group_per_minute
        self.global_per_second = global_per_second
        self._sends: deque[tuple[str, float]] = deque()  # the last minute's sends, oldest first
        self._paused_until = 0.0

    @classmethod
    def from_config(cls, cfg: AlertsConfig) -> SendRateLimiter:
        return cls(cfg.chat_interval_seconds, cfg.group_per_minute, cfg.global_per_second)

    def load(self, engine: Engine, now: datetime) -> SendRateLimiter:
        """Remember the sends of the minute before ``now`` (by an earlier drain or process)."""
        with session_scope(engine, readonly=True) as session:
            rows = session.exec(select(AlertOutbox.chat_id, AlertOutbox.sent_at).where(
                AlertOutbox.sent_at >= now - timedelta(minutes=1))
                .order_by(AlertOutbox.sent_at)).all()
        for chat_id, sent_at in rows:
            self.record(chat_id, sent_at.timestamp())
        return self

    def record(self, chat_id: str, at: float) -> None:
        self._sends.append((chat_id, at))

    def pause_until(self, at: float) -> None:
        """Send nothing before ``at`` (Telegram answered 429 with retry_after)."""
        self._paused_until = max(self._paused_until, at)

    def wait(self, chat_id: str, at: float) -> float:
        """Seconds until a message to ``chat_id`` may be sent (0: now)."""
        while self._sends and self._sends[0][1] <= at - 60:
            self._sends.popleft()
        ready = self._paused_until
        mine = [t for c, t in self._sends if c == chat_id]
        if mine:
            ready = max(ready, mine[-1] + self.chat_interval)
        if is_group_chat(chat_id) and len(mine) >= self.group_per_minute:
            ready = max(ready, mine[-self.group_per_minute] + 60)
        last_second = [t for _, t in self._sends if t > at - 1]
        if len(last_second) >= self.global_per_second:
            ready = max(ready, last_second[-self.global_per_second] + 1)
        return max(0.0, ready - at)


# -- row states --------------------------------------------------------------------------------


def _claimable(now: datetime) -> Any:
    """Rows nobody works on: pending, or claimed by a sender whose lease expired."""
    return or_(AlertOutbox.status == "pending",
               (AlertOutbox.status == "sending") & (AlertOutbox.claimed_at < now - CLAIM_LEASE))


def _claim(engine: Engine, row_id: int, now: datetime) -> bool:
    with session_scope(engine) as session:
        result = session.execute(
            update(AlertOutbox).where(AlertOutbox.id == row_id, _claimable(now))
            .values(status="sending", claimed_at=now, attempts=AlertOutbox.attempts + 1))
        return result.rowcount == 1


def _finish(engine: Engine, row_id: int, **values: Any) -> None:
    with session_scope(engine) as session:
        session.execute(update(AlertOutbox).where(AlertOutbox.id == row_id).values(**values))


def _mark_sent(engine: Engine, row_id: int, message_id: int | None, now: datetime) -> None:
    _finish(engine, row_id, status="sent", sent_at=now, last_error=None,
            message_id=None if message_id is None else str(message_id))


def _skip(engine: Engine, row: AlertOutbox, reason: str, now: datetime) -> bool:
    """Mark a row skipped; a skipped signal no longer counts as the chat's last signal (so
    its repeat is not held back)."""
    with session_scope(engine) as session:
        result = session.execute(update(AlertOutbox).where(
            AlertOutbox.id == row.id, _claimable(now))
            .values(status="skipped", last_error=reason[:500]))
        if result.rowcount == 1 and row.kind == "signal":
            session.execute(delete(AlertLastSent).where(
                AlertLastSent.chat_id == row.chat_id, AlertLastSent.asset == row.asset,
                AlertLastSent.target == row.target, AlertLastSent.candle_time == row.candle_time))
        return result.rowcount == 1


_HOLD = "hold"  # screening verdict: not yet decidable (the outcome's signal is still pending)


def _screen(session: Session, settings: Settings, row: AlertOutbox,
            prefs: Mapping[str, ChatPref]) -> tuple[str, str]:
    """``("send", mode)``, ``("skip", reason)`` or ``(_HOLD, "")`` for a due row."""
    asset = None if row.asset in (SYSTEM, ALL) else row.asset
    mode = delivery_mode(prefs.get(row.chat_id), settings, row.kind, asset, row.target)
    if mode == "off":
        return "skip", f"chat {row.chat_id} does not receive {row.kind} alerts now"
    if row.kind == "outcome":
        status = session.exec(select(AlertOutbox.status).where(
            AlertOutbox.chat_id == row.chat_id, AlertOutbox.kind == "signal",
            AlertOutbox.asset == row.asset, AlertOutbox.target == row.target,
            AlertOutbox.candle_time == row.candle_time)).first()
        if status in ("pending", "sending"):
            return _HOLD, ""
        if status in ("skipped", "failed"):
            return "skip", f"its signal was {status}"
    return "send", mode


# -- sending -----------------------------------------------------------------------------------


_SILENT_CAPABLE: dict[type, bool] = {}


def _send(transport: Transport, chat_id: str, text: str, photo: bytes | None, silent: bool):
    """``transport.send``, asking for a silent message when the transport can send one (its
    ``send`` takes ``silent``); otherwise the message goes out with a notification."""
    kwargs: dict[str, Any] = {} if photo is None else {"photo": photo}
    if silent:
        kind = type(transport)
        if kind not in _SILENT_CAPABLE:
            _SILENT_CAPABLE[kind] = "silent" in inspect.signature(transport.send).parameters
            if not _SILENT_CAPABLE[kind]:
                log.warning("%s cannot send silently; silent alerts will notify", kind.__name__)
        if _SILENT_CAPABLE[kind]:
            kwargs["silent"] = True
    return transport.send(chat_id, text, **kwargs)


def _chart(engine: Engine, settings: Settings, row: AlertOutbox) -> bytes | None:
    """The signal's chart, or None (logged) when it cannot be drawn."""
    from signalcast.db.candles import read_candles
    from signalcast.notifier.charts import signal_chart

    p = row.payload
    try:
        with session_scope(engine, readonly=True) as session:
            candles = read_candles(session, row.asset, p["timeframe"], end=row.candle_time,
                                   limit=settings.alerts.chart_candles)
        move = f"{float(p['pct']) * 100:g}%"
        return signal_chart(candles, up_level=float(p["up_level"]),
                            down_level=float(p["down_level"]), up_label=f"+{move}",
                            down_label=f"-{move}",
                            title=f"{row.asset} {row.target}: {p['direction']} "
                                  f"{float(p['probability']):.0%}")
    except Exception as exc:  # a chart is a nicety: send the text alone
        log.warning("no chart for %s %s %s: %s", row.asset, row.target, row.candle_time, exc)
        return None


def drain_outbox(engine: Engine, transport_for: Callable[[str], Transport | None], *,
                 settings: Settings | None = None, limit: int = 100,
                 now: Callable[[], datetime] = utcnow,
                 sleep: Callable[[float], None] = time.sleep,
                 limiter: SendRateLimiter | None = None) -> DrainResult:
    """Send the due alerts, within ``alerts.drain_seconds`` and Telegram's rate limits.

    ``transport_for(chat_id)`` picks the transport (None: this process cannot serve that chat,
    the row waits). ``settings`` defaults to this process's runtime settings. Rows are read
    ``limit`` at a time, oldest first, until none is due or the time is up.
    """
    if settings is None:
        from signalcast.config.runtime import get_settings

        settings = get_settings()
    cfg = settings.alerts
    limiter = limiter or SendRateLimiter.from_config(cfg).load(engine, now())
    deadline = time.monotonic() + cfg.drain_seconds
    result = DrainResult()
    charts: dict[tuple[str, str, datetime], bytes | None] = {}
    while True:
        with session_scope(engine, readonly=True) as session:
            due = session.exec(select(AlertOutbox).where(
                _claimable(now()),
                (AlertOutbox.status != "pending") | (AlertOutbox.next_attempt_at <= now()))
                .order_by(AlertOutbox.id).limit(limit)).all()
            prefs = {p.chat_id: p for p in session.exec(select(ChatPref)).all()}
            verdicts = {row.id: _screen(session, settings, row, prefs) for row in due}
        acted, waits, stop = False, [], False
        for row in due:
            transport = transport_for(row.chat_id)
            verdict, detail = verdicts[row.id]
            if transport is None or verdict == _HOLD:
                continue
            if verdict == "skip":
                if _skip(engine, row, detail, now()):
                    result.skipped += 1
                    acted = True
                    log.info("alert %d to %s skipped: %s", row.id, row.chat_id, detail)
                continue
            wait = limiter.wait(row.chat_id, now().timestamp())
            if wait > 0:
                waits.append(wait)
                continue
            if time.monotonic() > deadline:
                stop = True
                break
            if not _claim(engine, row.id, now()):
                continue
            acted = True
            photo = None
            if row.kind == "signal" and cfg.charts and transport.html and "up_level" in row.payload:
                key = (row.asset, row.target, row.candle_time)
                if key not in charts:
                    charts[key] = _chart(engine, settings, row)
                photo = charts[key]
            text = format_alert(row.kind, row.payload, html=transport.html)
            try:
                sent = _send(transport, row.chat_id, fit_caption(text) if photo else text,
                             photo, silent=detail == "silent")
            except RetryLater as exc:
                delay = min(MAX_BACKOFF_S, max(exc.seconds, 2.0 ** min(row.attempts, 8)))
                _finish(engine, row.id, status="pending", last_error=str(exc)[:500],
                        next_attempt_at=now() + timedelta(seconds=delay))
                limiter.pause_until(now().timestamp() + exc.seconds)
                result.retry += 1
                log.warning("alert %d to %s: retry in %.0fs (%s)", row.id, row.chat_id, delay,
                            exc)
                if delay > cfg.max_wait_seconds:
                    stop = True  # Telegram is down or asks for a long pause: drain later
                    break
            except PermanentFailure as exc:
                _finish(engine, row.id, status="failed", last_error=str(exc)[:500])
                result.failed += 1
                log.error("alert %d to %s failed for good: %s", row.id, row.chat_id, exc)
            else:
                limiter.record(row.chat_id, now().timestamp())
                _mark_sent(engine, row.id, None if sent is None else sent.message_id, now())
                result.sent += 1
        if stop or time.monotonic() > deadline:
            break
        if not acted:
            if not waits or time.monotonic() + min(waits) > deadline:
                break
            sleep(min(waits))
    return result


def transport_router(transports: Mapping[str, Transport],
                     default: Transport | None) -> Callable[[str], Transport | None]:
    """``transports`` by exact chat id (e.g. ``console``), ``default`` for the rest."""
    return lambda chat_id: transports.get(chat_id, default)
