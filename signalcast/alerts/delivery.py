"""What the drain does with an alert it cannot simply send: too old, or perhaps delivered.

**A timeout is not a failure.** When Telegram's answer to a send is lost (a read timeout, a
connection dropped after the request was written), the message may have been delivered; the
Bot API has no idempotency key, so sending it again may double it. The rule per kind:

- ``signal``, ``outcome``, ``model``: **never sent again.** A second copy reads as a second
  signal, a second result or a second promotion. The row is marked ``maybe_delivered`` and the
  operator is told once (a ``system`` alert naming the chat and the alert).
- ``system``, ``summary``: **sent again** after the backoff. A doubled warning or daily summary
  misleads nobody; a lost one hides a problem.

The same holds for a claim whose sender died mid-send (its lease expired): it may have sent.

**A signal has an age.** A signal still unsent ``alerts.max_signal_age_seconds`` after its
candle closed (unset: one candle of its timeframe) is marked ``expired`` and never sent: its
price levels and probability are those of then. The rows expired in one pass are reported to the
operator in one ``system`` alert, written in the same transaction, so each is told exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session

from signalcast.alerts.rules import SYSTEM, recipients
from signalcast.config import Settings
from signalcast.core.timeframes import timeframe_to_timedelta, utc
from signalcast.db.tables import AlertLastSent, AlertOutbox
from signalcast.db.upsert import insert_ignore

RESENT_AFTER_TIMEOUT = frozenset({"system", "summary"})
NOTICE_EXAMPLES = 10  # alerts named in one notice; the rest are counted


def resend_after_timeout(kind: str) -> bool:
    """Whether an alert of ``kind`` whose send may have been delivered is sent again.

    >>> resend_after_timeout("signal"), resend_after_timeout("summary")
    (False, True)
    """
    return kind in RESENT_AFTER_TIMEOUT


def max_signal_age(settings: Settings, row: AlertOutbox) -> timedelta:
    """``alerts.max_signal_age_seconds``, else one candle of the signal's timeframe (from its
    payload, else its asset's configuration, else one hour)."""
    if settings.alerts.max_signal_age_seconds is not None:
        return timedelta(seconds=settings.alerts.max_signal_age_seconds)
    return _candle(settings, row)


def signal_age(settings: Settings, row: AlertOutbox, now: datetime) -> timedelta:
    """How long ago the signal's candle closed (the candle time is its open time)."""
    return utc(now) - (utc(row.candle_time) + _candle(settings, row))


def _candle(settings: Settings, row: AlertOutbox) -> timedelta:
    timeframe = (row.payload or {}).get("timeframe")
    if not timeframe:
        timeframe = next((a.timeframe for a in settings.assets if a.symbol == row.asset), "1h")
    return timeframe_to_timedelta(str(timeframe))


def describe(row: AlertOutbox) -> dict[str, Any]:
    """The alert as a notice names it."""
    return {"id": row.id, "chat": row.chat_id, "kind": row.kind, "asset": row.asset,
            "target": row.target, "candle_time": utc(row.candle_time).isoformat()}


def _notify(session: Session, settings: Settings, key: str, at: datetime,
            payload: dict[str, Any]) -> int:
    """One ``system`` alert per chat receiving system alerts, keyed ``(key, at)``."""
    return sum(int(insert_ignore(session, AlertOutbox, {
        "chat_id": chat, "asset": SYSTEM, "target": key[:40], "candle_time": utc(at),
        "kind": "system", "payload": payload,
    }, keys=["chat_id", "asset", "target", "candle_time", "kind"]))
        for chat in recipients(session, settings, "system"))


def forget_last_signal(session: Session, row: AlertOutbox) -> None:
    """A signal that was not sent no longer counts as the chat's last one (its repeat may go)."""
    session.execute(delete(AlertLastSent).where(
        AlertLastSent.chat_id == row.chat_id, AlertLastSent.asset == row.asset,
        AlertLastSent.target == row.target, AlertLastSent.candle_time == row.candle_time))


def expire_signals(session: Session, settings: Settings, rows: Sequence[AlertOutbox],
                   now: datetime, claimable: Any) -> int:
    """Mark ``rows`` (unsent signals past their age) ``expired`` with the reason, and queue one
    notice naming them; returns how many this call expired (a concurrent drain may have taken
    some)."""
    expired = []
    for row in rows:
        age, limit = signal_age(settings, row, now), max_signal_age(settings, row)
        reason = (f"expired: {age.total_seconds():.0f} s after its candle closed, over the "
                  f"{limit.total_seconds():.0f} s a signal may wait (alerts."
                  "max_signal_age_seconds); not sent")
        done = session.execute(update(AlertOutbox).where(AlertOutbox.id == row.id, claimable)
                               .values(status="expired", last_error=reason[:500]))
        if done.rowcount == 1:
            forget_last_signal(session, row)
            expired.append({**describe(row), "age_seconds": round(age.total_seconds())})
    if expired:
        _notify(session, settings, "delivery:expired", now, {
            "check": "signals_expired", "count": len(expired),
            "alerts": expired[:NOTICE_EXAMPLES]})
    return len(expired)


def mark_maybe_delivered(session: Session, settings: Settings, row: AlertOutbox,
                         reason: str, pause_until: datetime | None = None) -> None:
    """Mark a row whose send may have arrived ``maybe_delivered`` (never sent again) and tell
    the operator once (the notice is keyed by the row). ``pause_until``: the chat's later
    rows wait until then (a late delivery of this one should still arrive first)."""
    session.execute(update(AlertOutbox).where(AlertOutbox.id == row.id).values(
        status="maybe_delivered", last_error=f"maybe delivered, not resent: {reason}"[:500]))
    if pause_until is not None:
        session.execute(update(AlertOutbox).where(
            AlertOutbox.chat_id == row.chat_id, AlertOutbox.status == "pending",
            AlertOutbox.next_attempt_at < pause_until).values(next_attempt_at=pause_until))
    _notify(session, settings, f"delivery:uncertain:{row.id}", row.candle_time, {
        "check": "delivery_uncertain", "alert": describe(row), "reason": reason[:300]})
