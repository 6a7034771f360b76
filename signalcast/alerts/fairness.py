"""Which alert goes next: one head per chat, read fairly, and Telegram's rate limits.

A chat's alerts leave in the order they were queued (outbox id). So the drain never reads "the
N oldest due rows" (one chat's backlog would fill that window and hold every other chat back,
and a row pushed back by its own backoff would let newer rows of its chat overtake it); it reads
each chat's **head**, the oldest row that is not finished (``pending`` or ``sending``), and
serves the heads oldest first, one message per chat per pass:

- a head whose ``next_attempt_at`` lies ahead pauses its whole chat (it failed with a 429 or a
  5xx and waits for its backoff); the chat's later rows wait behind it, in order;
- a head another drainer is sending (a live claim) holds its chat too;
- a chat no transport of this process serves is passed over without holding anyone up.

>>> limiter = SendRateLimiter(chat_interval=1.0, group_per_minute=20, global_per_second=30)
>>> limiter.record("42", 100.0)
>>> round(limiter.wait("42", 100.2), 3)
0.8
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from signalcast.config.alerts import AlertsConfig
from signalcast.db.engine import session_scope
from signalcast.db.tables import AlertOutbox

UNFINISHED = ("pending", "sending")


def is_group_chat(chat_id: str) -> bool:
    """Group and channel ids are negative (or an @channel name)."""
    return chat_id.startswith(("-", "@"))


def chat_heads(session: Session, limit: int = 1000) -> list[AlertOutbox]:
    """Each chat's oldest unfinished row, oldest first (at most ``limit`` chats)."""
    heads = (select(AlertOutbox.chat_id, func.min(AlertOutbox.id).label("head"))
             .where(AlertOutbox.status.in_(UNFINISHED)).group_by(AlertOutbox.chat_id)
             .subquery())
    return list(session.exec(select(AlertOutbox).join(heads, AlertOutbox.id == heads.c.head)
                             .order_by(AlertOutbox.id).limit(limit)).all())


class SendRateLimiter:
    """How long to wait before the next message to a chat may go (times in epoch seconds):
    ``chat_interval`` between two messages to one chat, ``group_per_minute`` to a group chat,
    ``global_per_second`` overall; :meth:`pause_until` holds every chat (a 429's
    ``retry_after``), :meth:`pause_chat` one chat (a timeout: Telegram is slow for it)."""

    def __init__(self, chat_interval: float, group_per_minute: int, global_per_second: int):
        self.chat_interval = chat_interval
        self.group_per_minute = group_per_minute
        self.global_per_second = global_per_second
        self._sends: deque[tuple[str, float]] = deque()  # the last minute's sends, oldest first
        self._paused_until = 0.0
        self._chat_paused: dict[str, float] = {}

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

    def pause_chat(self, chat_id: str, at: float) -> None:
        """Send nothing to ``chat_id`` before ``at``."""
        self._chat_paused[chat_id] = max(self._chat_paused.get(chat_id, 0.0), at)

    def wait(self, chat_id: str, at: float) -> float:
        """Seconds until a message to ``chat_id`` may be sent (0: now)."""
        while self._sends and self._sends[0][1] <= at - 60:
            self._sends.popleft()
        ready = max(self._paused_until, self._chat_paused.get(chat_id, 0.0))
        mine = [t for c, t in self._sends if c == chat_id]
        if mine:
            ready = max(ready, mine[-1] + self.chat_interval)
        if is_group_chat(chat_id) and len(mine) >= self.group_per_minute:
            ready = max(ready, mine[-self.group_per_minute] + 60)
        last_second = [t for _, t in self._sends if t > at - 1]
        if len(last_second) >= self.global_per_second:
            ready = max(ready, last_second[-self.global_per_second] + 1)
        return max(0.0, ready - at)
