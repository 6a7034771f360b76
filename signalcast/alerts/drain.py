"""Drain the alert outbox: each chat's alerts screened, claimed, sent once and marked, in order.

At-least-once is the best any transport offers (a send that timed out may have arrived), so the
outbox keeps the window small: a row is claimed by an atomic UPDATE before sending and marked
right after. What happens when the answer is lost is decided per kind
(:mod:`signalcast.alerts.delivery`): a signal, outcome or model alert is never sent twice (it is
marked ``maybe_delivered`` and the operator told once); a system alert or summary is sent
again.

**Order and fairness** (:mod:`signalcast.alerts.fairness`): the drain serves each chat's oldest
unfinished row (its head), one message per chat per pass, oldest head first. A failed head
pauses its chat, not itself, so a chat's later alert never overtakes an earlier one; one chat's
backlog (a group held to 20 messages a minute) never delays another chat; a chat no transport
here serves holds nobody up.

- ``RetryLater`` (429, 5xx, an outage, a connection refused) keeps the head pending with backoff
  (at least the ``retry_after`` Telegram asked for; a 429 also holds every chat for that long)
  and never gives up: an outage delays alerts, loses none. A short wait is waited out inside the
  drain; a long one ends it (the scheduler's drain job and the next tick drain again).
- ``PermanentFailure`` (400/403) marks the row ``failed`` at once: retrying cannot help.
- Rows a chat should no longer get (paused or the kind turned off since it was queued, the
  outcome of a signal that was not sent) are marked ``skipped`` with the reason. (Repeated
  signals are not queued at all: see ``alert_rules.queue_signal_alerts``.)
- A signal past its age (``alerts.max_signal_age_seconds``) is marked ``expired``, never sent.

Row states: ``pending`` -> ``sending`` -> ``sent`` | ``failed`` | ``skipped`` | ``expired`` |
``maybe_delivered``; only ``pending`` and ``sending`` are unfinished.

Telegram's rate limits are kept here, by the only consumer of the ``alerts`` queue: about one
message per second per chat, 20 per minute per group chat (negative ids), 30 per second overall
(:class:`SendRateLimiter`, seeded with the sends of the last minute from the database).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from signalcast.alerts.delivery import (
    expire_signals,
    forget_last_signal,
    mark_maybe_delivered,
    max_signal_age,
    resend_after_timeout,
    signal_age,
)
from signalcast.alerts.fairness import SendRateLimiter, chat_heads, is_group_chat
from signalcast.alerts.rules import ALL, SYSTEM, delivery_mode
from signalcast.config import Settings
from signalcast.core.timeframes import utc
from signalcast.db.engine import session_scope
from signalcast.db.tables import AlertOutbox, ChatPref, utcnow
from signalcast.notifier.format import fit_caption, format_alert
from signalcast.notifier.telegram import PermanentFailure, RetryLater

__all__ = ["CLAIM_LEASE", "DrainResult", "SendRateLimiter", "drain_outbox", "is_group_chat",
           "transport_router"]

log = logging.getLogger(__name__)
CLAIM_LEASE = timedelta(minutes=2)
MAX_BACKOFF_S = 300.0


class Transport(Protocol):
    html: bool

    def send(self, chat_id: str, text: str, *, photo: bytes | None = None): ...


@dataclass
class DrainResult:
    """What one drain did; ``to_dict`` always has the first four counts, and the others
    when they happened."""

    sent: int = 0
    retry: int = 0
    failed: int = 0
    skipped: int = 0
    expired: int = 0
    maybe_delivered: int = 0

    def to_dict(self) -> dict[str, int]:
        counts = {"sent": self.sent, "retry": self.retry, "failed": self.failed,
                  "skipped": self.skipped}
        counts.update({k: v for k, v in (("expired", self.expired),
                                         ("maybe_delivered", self.maybe_delivered)) if v})
        return counts


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
            forget_last_signal(session, row)
        return result.rowcount == 1


def _uncertain(engine: Engine, settings: Settings, row: AlertOutbox, reason: str,
               pause_until: datetime | None = None) -> None:
    with session_scope(engine) as session:
        mark_maybe_delivered(session, settings, row, reason, pause_until)
    log.warning("alert %d (%s) to %s may have been delivered (%s); not resent, operator told",
                row.id, row.kind, row.chat_id, reason)


_HOLD = "hold"  # screening verdict: not yet decidable (the outcome's signal is still pending)
_EXPIRE = "expire"


def _screen(session: Session, settings: Settings, row: AlertOutbox,
            prefs: Mapping[str, ChatPref], now: datetime) -> tuple[str, str]:
    """``("send", mode)``, ``("skip", reason)``, ``(_EXPIRE, "")`` or ``(_HOLD, "")``."""
    asset = None if row.asset in (SYSTEM, ALL) else row.asset
    mode = delivery_mode(prefs.get(row.chat_id), settings, row.kind, asset, row.target)
    if mode == "off":
        return "skip", f"chat {row.chat_id} does not receive {row.kind} alerts now"
    if row.kind == "signal" and signal_age(settings, row, now) > max_signal_age(settings, row):
        return _EXPIRE, ""
    if row.kind == "outcome":
        status = session.exec(select(AlertOutbox.status).where(
            AlertOutbox.chat_id == row.chat_id, AlertOutbox.kind == "signal",
            AlertOutbox.asset == row.asset, AlertOutbox.target == row.target,
            AlertOutbox.candle_time == row.candle_time)).first()
        if status in ("pending", "sending"):
            return _HOLD, ""
        if status in ("skipped", "failed", "expired"):
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


def _reliability_chart(row: AlertOutbox) -> bytes | None:
    """The summary's reliability chart of what was served, or None (logged)."""
    from signalcast.notifier.charts import reliability_chart

    try:
        return reliability_chart(row.payload["reliability"],
                                 f"last {row.payload['days']} day(s), all targets")
    except Exception as exc:  # a chart is a nicety: send the text alone
        log.warning("no reliability chart for summary %s: %s", row.candle_time, exc)
        return None


def drain_outbox(engine: Engine, transport_for: Callable[[str], Transport | None], *,
                 settings: Settings | None = None, limit: int = 1000,
                 now: Callable[[], datetime] = utcnow,
                 sleep: Callable[[float], None] = time.sleep,
                 limiter: SendRateLimiter | None = None) -> DrainResult:
    """Send the due alerts, within ``alerts.drain_seconds`` and Telegram's rate limits.

    ``transport_for(chat_id)`` picks the transport (None: this process cannot serve that chat,
    its rows wait and hold no other chat up). ``settings`` defaults to this process's runtime
    settings. Each pass reads every chat's head (at most ``limit`` chats) and sends at most one
    message per chat, until nothing is due or the time is up.
    """
    if settings is None:
        from signalcast.config.runtime import get_settings

        settings = get_settings()
    limiter = limiter or SendRateLimiter.from_config(settings.alerts).load(engine, now())
    drain = _Drain(engine, transport_for, settings, limiter, now,
                   time.monotonic() + settings.alerts.drain_seconds)
    while True:
        acted, waits, stop = drain.one_pass(limit)
        if stop or time.monotonic() > drain.deadline:
            break
        if not acted:
            if not waits or time.monotonic() + min(waits) > drain.deadline:
                break
            sleep(min(waits))
    return drain.result


class _Drain:
    """One drain run: its settings, clock, limiter, result and chart cache."""

    def __init__(self, engine: Engine, transport_for: Callable[[str], Transport | None],
                 settings: Settings, limiter: SendRateLimiter, now: Callable[[], datetime],
                 deadline: float):
        self.engine, self.transport_for, self.settings = engine, transport_for, settings
        self.limiter, self.now, self.deadline = limiter, now, deadline
        self.result = DrainResult()
        self.charts: dict[tuple[str, str, datetime], bytes | None] = {}

    def one_pass(self, limit: int) -> tuple[bool, list[float], bool]:
        """Serve each chat's head once; returns (acted, waits in seconds, stop)."""
        at = self.now()
        with session_scope(self.engine, readonly=True) as session:
            heads = [h for h in chat_heads(session, limit)
                     if self.transport_for(h.chat_id) is not None]
            prefs = {p.chat_id: p for p in session.exec(select(ChatPref)).all()}
            verdicts = {h.id: _screen(session, self.settings, h, prefs, at) for h in heads}
        acted, waits = False, []
        if any(verdicts[h.id][0] == _EXPIRE for h in heads):
            with session_scope(self.engine) as session:  # all stale rows now: one notice
                stale = [row for row in session.exec(select(AlertOutbox).where(
                    AlertOutbox.kind == "signal", _claimable(at))).all()
                    if signal_age(self.settings, row, at) > max_signal_age(self.settings, row)]
                expired = expire_signals(session, self.settings, stale, at, _claimable(at))
            self.result.expired += expired
            log.warning("%d signal(s) expired unsent (older than their maximum age); "
                        "operator told", expired)
            acted = True
        for head in heads:
            verdict, detail = verdicts[head.id]
            if verdict in (_HOLD, _EXPIRE) or not self._free(head, at):
                continue  # being sent by another drainer, or not decidable yet
            if head.status == "sending" and not resend_after_timeout(head.kind):
                _uncertain(self.engine, self.settings, head, "its sender stopped mid-send "
                           "(the claim expired)")
                self.result.maybe_delivered += 1
                acted = True
                continue
            if verdict == "skip":
                if _skip(self.engine, head, detail, self.now()):
                    self.result.skipped += 1
                    acted = True
                    log.info("alert %d to %s skipped: %s", head.id, head.chat_id, detail)
                continue
            wait = (utc(head.next_attempt_at) - at).total_seconds()
            if getattr(self.transport_for(head.chat_id), "rate_limited", True):
                wait = max(wait, self.limiter.wait(head.chat_id, self.now().timestamp()))
            if wait > 0:
                waits.append(wait)  # the chat waits: its head's backoff or a rate limit
                continue
            if time.monotonic() > self.deadline:
                return acted, waits, True
            if not _claim(self.engine, head.id, self.now()):
                continue
            acted = True
            if self._send(head, silent=detail == "silent"):
                return acted, waits, True
        return acted, waits, False

    @staticmethod
    def _free(row: AlertOutbox, at: datetime) -> bool:
        """Not under another sender's live claim."""
        return row.status == "pending" or utc(row.claimed_at) < at - CLAIM_LEASE

    def _send(self, row: AlertOutbox, *, silent: bool) -> bool:
        """Send one claimed row and mark it; True: stop draining (Telegram needs a long
        pause)."""
        cfg, transport = self.settings.alerts, self.transport_for(row.chat_id)
        photo = None
        if row.kind == "signal" and cfg.charts and transport.html and "up_level" in row.payload:
            key = (row.asset, row.target, row.candle_time)
            if key not in self.charts:
                self.charts[key] = _chart(self.engine, self.settings, row)
            photo = self.charts[key]
        elif row.kind == "summary" and transport.html and row.payload.get("reliability"):
            photo = _reliability_chart(row)
        text = format_alert(row.kind, row.payload, html=transport.html)
        try:
            sent = _send(transport, row.chat_id, fit_caption(text) if photo else text,
                         photo, silent=silent)
        except RetryLater as exc:
            return self._retry_later(row, exc)
        except PermanentFailure as exc:
            _finish(self.engine, row.id, status="failed", last_error=str(exc)[:500])
            self.result.failed += 1
            log.error("alert %d to %s failed for good: %s", row.id, row.chat_id, exc)
            return False
        self.limiter.record(row.chat_id, self.now().timestamp())
        _mark_sent(self.engine, row.id, None if sent is None else sent.message_id, self.now())
        self.result.sent += 1
        return False

    def _retry_later(self, row: AlertOutbox, exc: RetryLater) -> bool:
        """Not sent (or perhaps sent): pause the chat, keep its order; True: stop draining."""
        if exc.maybe_delivered and not resend_after_timeout(row.kind):
            until = self.now() + timedelta(seconds=exc.seconds)  # the chat waits, also
            _uncertain(self.engine, self.settings, row, exc.reason, until)  # across drains
            self.result.maybe_delivered += 1
            self.limiter.pause_chat(row.chat_id, until.timestamp())
            return exc.seconds > self.settings.alerts.max_wait_seconds
        # the row stays its chat's head: the chat waits out the backoff, in order
        delay = min(MAX_BACKOFF_S, max(exc.seconds, 2.0 ** min(row.attempts, 8)))
        _finish(self.engine, row.id, status="pending", last_error=str(exc)[:500],
                next_attempt_at=self.now() + timedelta(seconds=delay))
        if exc.flood:  # Telegram said: nothing from this bot for that long
            self.limiter.pause_until(self.now().timestamp() + exc.seconds)
        self.result.retry += 1
        log.warning("alert %d to %s: chat paused, retry in %.0fs (%s)", row.id, row.chat_id,
                    delay, exc)
        return delay > self.settings.alerts.max_wait_seconds  # down, or a long pause asked


def transport_router(transports: Mapping[str, Transport],
                     default: Transport | None) -> Callable[[str], Transport | None]:
    """``transports`` by exact chat id (e.g. ``console``), ``default`` for the rest."""
    return lambda chat_id: transports.get(chat_id, default)
