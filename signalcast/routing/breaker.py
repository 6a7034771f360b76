"""A circuit breaker per model version, shared by every worker process through the database.

``closed``: the version is tried. After ``breaker_failures`` consecutive failures it is ``open``:
skipped (the fallback chain serves) for ``breaker_cooldown_minutes``. Then it is ``half_open``:
the next prediction tries it once; success closes it, failure opens it for another cooldown.

Times are *candle* times, the clock of the prediction that tried the model, so a replay on a
simulated clock behaves like live serving. Each (version, candle) counts at most once: a
prediction run twice (a redelivered task) does not count its failure twice, which keeps
prediction idempotent. State lives in ``model_breakers`` (one row per version that ever failed),
read once per prediction with the rows locked on Postgres (SQLite serialises writers anyway), and
written only when it changes, so the normal path costs one small SELECT.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, select

from signalcast.config.settings import RoutePolicy
from signalcast.db.tables import ModelBreaker, utcnow
from signalcast.db.upsert import upsert

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class BreakerState:
    state: str = CLOSED  # stored state: closed | open (half_open is derived from the clock)
    failures: int = 0
    opened_at: datetime | None = None
    last_candle: datetime | None = None
    last_error: str | None = None


def state_at(breaker: BreakerState, at: datetime, policy: RoutePolicy) -> str:
    """``closed``, ``open`` or ``half_open`` at candle time ``at``."""
    if breaker.state != OPEN:
        return CLOSED
    if at >= breaker.opened_at + timedelta(minutes=policy.breaker_cooldown_minutes):
        return HALF_OPEN
    return OPEN


def breaker_rows(session: Session, version_ids: Iterable[int], *,
                 lock: bool = True) -> list[ModelBreaker]:
    """The breaker rows of ``version_ids`` (``lock``: FOR UPDATE), in one query."""
    ids = sorted(set(version_ids))
    if not ids:
        return []
    query = select(ModelBreaker).where(ModelBreaker.model_version_id.in_(ids))
    return list(session.exec(query.with_for_update() if lock else query).all())


class Breakers:
    """The breakers of the versions one prediction may use."""

    def __init__(self, session: Session, version_ids: Iterable[int], *, lock: bool = True,
                 defer: bool = False, rows: list[ModelBreaker] | None = None):
        """``defer``: keep the state changes in :attr:`pending` instead of writing them (a
        prediction deciding in a read-only transaction writes them later with
        :func:`apply_pending`). ``rows``: the versions' breaker rows, read already."""
        self.session = session
        self.pending: list[tuple[int, BreakerState]] | None = [] if defer else None
        if rows is None:
            rows = breaker_rows(session, version_ids, lock=lock)
        self._states = {row.model_version_id: BreakerState(
            row.state, row.failures, row.opened_at, row.last_candle, row.last_error)
            for row in rows}

    def get(self, version_id: int) -> BreakerState:
        return self._states.get(version_id, BreakerState())

    def allows(self, version_id: int, at: datetime, policy: RoutePolicy) -> tuple[bool, str]:
        """(may this version be tried at ``at``, why not)."""
        breaker = self.get(version_id)
        if state_at(breaker, at, policy) != OPEN:
            return True, ""
        until = breaker.opened_at + timedelta(minutes=policy.breaker_cooldown_minutes)
        return False, (f"circuit open after {breaker.failures} failures "
                       f"(until {until:%Y-%m-%d %H:%M}): {breaker.last_error or ''}")

    def success(self, version_id: int, at: datetime) -> None:
        breaker = self.get(version_id)
        if _counted(breaker, at) or (breaker.state == CLOSED and breaker.failures == 0):
            return
        self._write(version_id, BreakerState(CLOSED, 0, None, at, None))

    def failure(self, version_id: int, at: datetime, error: str, policy: RoutePolicy) -> bool:
        """Count a failure at ``at``; True when it opened the circuit (closed or half-open ->
        open)."""
        breaker = self.get(version_id)
        if _counted(breaker, at):
            return False
        failures = breaker.failures + 1
        was = state_at(breaker, at, policy)
        opens = was == HALF_OPEN or failures >= policy.breaker_failures
        self._write(version_id, BreakerState(
            OPEN if opens else CLOSED, failures, at if opens else None, at, error[:300]))
        return opens and was != OPEN

    def _write(self, version_id: int, state: BreakerState) -> None:
        self._states[version_id] = state
        if self.pending is not None:
            self.pending.append((version_id, state))
            return
        upsert(self.session, ModelBreaker, [{
            "model_version_id": version_id, "state": state.state, "failures": state.failures,
            "opened_at": state.opened_at, "last_candle": state.last_candle,
            "last_error": state.last_error, "updated_at": utcnow()}],
            keys=["model_version_id"],
            update=["state", "failures", "opened_at", "last_candle", "last_error", "updated_at"])


def apply_pending(session: Session, pending: list[tuple[int, BreakerState]]) -> None:
    """Write state changes decided on an earlier, read-only look (:class:`Breakers` with
    ``defer``), each unless its candle was counted meanwhile (a run of the same prediction
    that wrote first): the rows are read again, locked on Postgres, so a candle still counts
    at most once and a newer candle's state is never undone."""
    if not pending:
        return
    breakers = Breakers(session, [version_id for version_id, _ in pending])
    for version_id, state in pending:
        if state.last_candle is None or not _counted(breakers.get(version_id), state.last_candle):
            breakers._write(version_id, state)


def _counted(breaker: BreakerState, at: datetime) -> bool:
    """This candle (or a newer one) was already counted: a rerun changes nothing."""
    return breaker.last_candle is not None and at <= breaker.last_candle
