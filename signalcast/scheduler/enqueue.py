"""Publish after the commit: a scheduled enqueue is ``pending``, then published, then ``sent``.

The (job, fire time) row is committed as ``pending`` (with the signature it will publish)
before the broker is called, and marked ``sent`` in a second short transaction after. So no
database transaction is open while the publish is retried (SQLite has one writer), and:

- a crash (or a broker outage longer than :data:`ENQUEUE_RETRY_SECONDS`) between the two
  leaves a ``pending`` row, which the reconciler publishes again (scheduler/reconcile.py);
- a publish that succeeded but whose mark failed is published again by it too: harmless, the
  task ids are deterministic and every task is idempotent.

This module owns the retries of a publish (kombu's own publish retry is turned off), so a
broker outage costs one loop of attempts, not attempts times kombu's retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from celery.canvas import Signature, maybe_signature
from celery.result import AsyncResult
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col

from signalcast.db.engine import session_scope
from signalcast.db.tables import ScheduledEnqueue, utcnow
from signalcast.db.upsert import insert_ignore
from signalcast.tasks.app import app

log = logging.getLogger(__name__)
ENQUEUE_RETRY_SECONDS = 120.0
T = TypeVar("T")


def task_ids(signature: Signature) -> list[str]:
    """The task ids a (chain/group of) signature(s) will run under, in order."""

    def walk(sig: Any) -> Iterator[str]:
        sig = maybe_signature(sig, app=app)
        inner = sig.get("kwargs", {}).get("tasks") if sig.get("subtask_type") else None
        if inner is not None:
            for child in inner:
                yield from walk(child)
        elif sig.options.get("task_id"):
            yield sig.options["task_id"]

    return list(walk(signature))


def _with_retries(what: str, action: Callable[[], T]) -> T:
    """Run ``action`` until it succeeds, with backoff, for up to ENQUEUE_RETRY_SECONDS; then
    raise (an enqueue is never dropped silently)."""
    deadline = time.monotonic() + ENQUEUE_RETRY_SECONDS
    attempt = 0
    while True:
        attempt += 1
        try:
            return action()
        except Exception as exc:  # broker or database briefly down
            if time.monotonic() > deadline:
                log.error("%s failed %d times: %s", what, attempt, exc)
                raise
            log.warning("%s failed (%s); retrying", what, exc)
            time.sleep(min(0.5 * 2**attempt, 5.0))


def publish(signature: Signature | dict, what: str) -> AsyncResult:
    """Publish a signature (or its stored dict), retried while the broker is down."""
    sig = maybe_signature(signature, app=app)

    def attempt() -> AsyncResult:
        # Ask the broker first: a publish to a dead Redis would also subscribe every result of
        # the tick to the result backend, whose reconnect budget (20 s) then runs out for good.
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
        return sig.apply_async(retry=False)

    return _with_retries(f"publish of {what}", attempt)


def mark(engine: Engine, job: str | list[str], fire_time: datetime, **values: Any) -> bool:
    """Update one enqueue row (or the rows of several jobs at one fire time) in its own short
    transaction; False (logged) when that fails."""
    jobs = [job] if isinstance(job, str) else job
    try:
        with session_scope(engine) as session:
            session.execute(update(ScheduledEnqueue).where(
                col(ScheduledEnqueue.job).in_(jobs), ScheduledEnqueue.fire_time == fire_time)
                .values(**values))
        return True
    except Exception as exc:  # harmless: the reconciler publishes it again (same task ids)
        log.warning("%s at %s: could not record %s (%s)", ", ".join(jobs), fire_time, values,
                    exc)
        return False


def enqueue_once(engine: Engine, job: str, fire_time: datetime, signature: Signature, *,
                 deadline: datetime | None = None) -> AsyncResult | None:
    """Enqueue ``signature`` unless (job, fire_time) was enqueued before: commit a pending
    row, publish with no transaction open, mark it sent. None when it was enqueued before."""
    return enqueue_shared(engine, {job: task_ids(signature)}, fire_time, signature,
                          deadline=deadline)


def enqueue_shared(engine: Engine, jobs: dict[str, list[str]], fire_time: datetime,
                   signature: Signature, *, deadline: datetime | None = None
                   ) -> AsyncResult | None:
    """:func:`enqueue_once` for several jobs that one publish serves (a tick's batch of
    assets): a row per job (with the task ids that are its own work), committed together,
    one publish, marked sent together. None when every job was enqueued before; when only
    some were, the whole signature is published again (its task ids are deterministic and
    its tasks idempotent: the work enqueued before is not done twice)."""
    now, stored = utcnow(), dict(signature)
    rows = [{"job": job, "fire_time": fire_time, "task_ids": ids, "status": "pending",
             "deadline": deadline, "signature": stored, "enqueued_at": now}
            for job, ids in jobs.items()]
    what = ", ".join(jobs) if len(jobs) <= 3 else f"{next(iter(jobs))} and {len(jobs) - 1} more"

    def insert() -> list[str]:
        with session_scope(engine) as session:
            return [row["job"] for row in rows
                    if insert_ignore(session, ScheduledEnqueue, row, keys=["job", "fire_time"])]

    new = _with_retries(f"recording {what} at {fire_time}", insert)
    if not new:
        log.info("%s at %s was enqueued before; skipped", what, fire_time)
        return None
    result = publish(signature, f"{what} at {fire_time}")
    mark(engine, new, fire_time, status="sent", sent_at=utcnow())
    return result
