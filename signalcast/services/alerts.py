"""Drain the alert outbox: each alert row is claimed, sent once, and marked.

At-least-once is the best any transport offers (a send that timed out may have arrived), so the
outbox keeps the window small: a row is claimed by an atomic UPDATE before sending and marked
right after. A worker that dies mid-send leaves a claim that expires after ``CLAIM_LEASE`` and the
row is retried. ``RetryLater`` (429, 5xx, timeouts, outages) reschedules the row with backoff and
never gives up, so an outage delays alerts but loses none; ``PermanentFailure`` (400/403) marks
it failed at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlmodel import select

from signalcast.db.engine import session_scope
from signalcast.db.tables import AlertOutbox, utcnow
from signalcast.notifier.format import format_alert
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

    def to_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "retry": self.retry, "failed": self.failed}


def _claim(engine: Engine, row_id: int, now: datetime) -> bool:
    with session_scope(engine) as session:
        result = session.execute(
            update(AlertOutbox)
            .where(AlertOutbox.id == row_id, or_(
                AlertOutbox.status == "pending",
                (AlertOutbox.status == "sending") & (AlertOutbox.claimed_at < now - CLAIM_LEASE),
            ))
            .values(status="sending", claimed_at=now, attempts=AlertOutbox.attempts + 1))
        return result.rowcount == 1


def _finish(engine: Engine, row_id: int, **values) -> None:
    with session_scope(engine) as session:
        session.execute(update(AlertOutbox).where(AlertOutbox.id == row_id).values(**values))


def drain_outbox(engine: Engine, transport_for: Callable[[str], Transport | None], *,
                 limit: int = 100, now: Callable[[], datetime] = utcnow) -> DrainResult:
    """Send up to ``limit`` due alerts. ``transport_for(chat_id)`` picks the transport (None:
    that chat cannot be served by this process, the row waits)."""
    result = DrainResult()
    with session_scope(engine) as session:
        due = session.exec(
            select(AlertOutbox.id, AlertOutbox.chat_id, AlertOutbox.kind, AlertOutbox.payload,
                   AlertOutbox.attempts)
            .where(or_(
                (AlertOutbox.status == "pending") & (AlertOutbox.next_attempt_at <= now()),
                (AlertOutbox.status == "sending")
                & (AlertOutbox.claimed_at < now() - CLAIM_LEASE),
            ))
            .order_by(AlertOutbox.id).limit(limit)).all()
    for row_id, chat_id, kind, payload, attempts in due:
        transport = transport_for(chat_id)
        if transport is None or not _claim(engine, row_id, now()):
            continue
        text = format_alert(kind, payload, html=transport.html)
        try:
            sent = transport.send(chat_id, text)
        except RetryLater as exc:
            delay = min(MAX_BACKOFF_S, max(exc.seconds, 2.0 ** min(attempts, 8)))
            _finish(engine, row_id, status="pending", last_error=str(exc)[:500],
                    next_attempt_at=now() + timedelta(seconds=delay))
            result.retry += 1
            log.warning("alert %d to %s: retry in %.0fs (%s)", row_id, chat_id, delay, exc)
        except PermanentFailure as exc:
            _finish(engine, row_id, status="failed", last_error=str(exc)[:500])
            result.failed += 1
            log.error("alert %d to %s failed for good: %s", row_id, chat_id, exc)
        else:
            _finish(engine, row_id, status="sent", sent_at=now(),
                    message_id=None if sent is None else str(sent.message_id), last_error=None)
            result.sent += 1
    return result


def transport_router(transports: Mapping[str, Transport],
                     default: Transport | None) -> Callable[[str], Transport | None]:
    """``transports`` by exact chat id (e.g. ``console``), ``default`` for the rest."""
    return lambda chat_id: transports.get(chat_id, default)
