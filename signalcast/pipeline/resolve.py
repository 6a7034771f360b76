"""Resolve predictions whose outcome is known, with the same first-touch function as training.

The work of one call does not grow with the stored history: only predictions of the last
``horizon + RESOLVE_CATCH_UP`` candles are looked at (a tick resolves the one that just reached
its horizon or touched a level; the catch-up covers a resolver that was down for a while), found
for all targets in one query; the candles read (once, for all targets) are those from the oldest
still-pending prediction to ``now``, labelled once per
target by the first-touch function training uses (:func:`first_touch_labels`; each row looks only
at the ``horizon`` candles after it, so this equals resolving each entry on its own), and the
outcomes of one target are inserted in one statement.
"""

from __future__ import annotations

import logging
from datetime import datetime

import pandas as pd
from sqlalchemy import exists
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from signalcast.alerts.rules import queue_outcome_alerts
from signalcast.config import Settings
from signalcast.core.timeframes import last_closed_open_time, timeframe_to_timedelta, utc
from signalcast.db.candles import read_candles
from signalcast.db.engine import session_scope
from signalcast.db.tables import Outcome, Prediction
from signalcast.db.upsert import insert_new
from signalcast.features import PENDING, first_touch_labels

log = logging.getLogger(__name__)

# Candles beyond a target's horizon within which a pending prediction is still resolved by a
# tick (two weeks of hourly candles). Older ones need ``since`` (a catch-up run).
RESOLVE_CATCH_UP = 336


def pending_times(session: Session, asset: str, target: str, newest: datetime,
                  since: datetime) -> list[datetime]:
    """Candle times in [since, newest) with a prediction of ``target`` and no outcome yet."""
    return pending_by_target(session, asset, {target: since}, newest).get(target, [])


def pending_by_target(session: Session, asset: str, since: dict[str, datetime],
                      newest: datetime) -> dict[str, list[datetime]]:
    """Per target of ``since``: the candle times in [since[target], newest) with a prediction
    of it and no outcome yet, oldest first. One query for all the targets."""
    if not since:
        return {}
    unresolved = ~exists().where(Outcome.asset == Prediction.asset,
                                 Outcome.target == Prediction.target,
                                 Outcome.candle_time == Prediction.candle_time)
    rows = session.exec(
        select(Prediction.target, Prediction.candle_time).distinct().where(
            Prediction.asset == asset, Prediction.target.in_(list(since)),
            Prediction.candle_time >= min(since.values()), Prediction.candle_time < newest,
            unresolved)).all()
    out: dict[str, list[datetime]] = {}
    for target, candle_time in rows:
        if utc(candle_time) >= utc(since[target]):
            out.setdefault(target, []).append(candle_time)
    return {target: sorted(times) for target, times in out.items()}


def resolve_outcomes(session: Session, settings: Settings, asset: str, now: datetime, *,
                     since: datetime | None = None) -> int:
    """Record the outcome of every predicted candle of ``asset`` that has resolved by ``now``
    (a level touched, or the horizon passed). Only candles closed at ``now`` are used, so a
    replay over stored history never peeks. Predictions older than the target's horizon plus
    :data:`RESOLVE_CATCH_UP` candles are left to a call with an earlier ``since``.
    Returns the number of outcomes added. Everything in ``session``'s transaction; the tasks
    use :func:`resolve_asset` (the same, its reads outside the write transaction)."""
    return store_outcomes(session, settings, resolved_rows(session, settings, asset, now,
                                                           since=since))


def resolve_asset(engine: Engine, settings: Settings, asset: str, now: datetime, *,
                  since: datetime | None = None) -> int:
    """:func:`resolve_outcomes` in two transactions: the reads and the labelling in a read-only
    one, then the inserts and their alerts in a short write one. On SQLite a write transaction
    holds the file's one write lock from its start (``BEGIN IMMEDIATE``), so labelling inside it
    made every other process wait (a parallel replay, a second worker). Nothing is lost by the
    split: an outcome is a fact of stored candles, and a row another run inserted meanwhile is
    skipped (``ON CONFLICT DO NOTHING``) with its alert, as before."""
    with session_scope(engine, readonly=True) as session:
        rows = resolved_rows(session, settings, asset, now, since=since)
    if not rows:
        return 0
    with session_scope(engine) as session:
        return store_outcomes(session, settings, rows)


def resolved_rows(session: Session, settings: Settings, asset: str, now: datetime, *,
                  since: datetime | None = None) -> list[dict]:
    """The outcome rows :func:`resolve_outcomes` would insert (reads only), in target order."""
    asset_cfg = settings.asset(asset)
    newest = last_closed_open_time(now, asset_cfg.timeframe)
    step = timeframe_to_timedelta(asset_cfg.timeframe)
    since_of = {t.key: since if since is not None else newest - (t.horizon + RESOLVE_CATCH_UP)
                * step for t in settings.targets}
    pending = pending_by_target(session, asset_cfg.symbol, since_of, newest)
    if not pending:
        return []
    # One read for every target: from the oldest pending candle of any; each target labels
    # the part of it from its own oldest pending candle (the frame it would have read alone).
    history = read_candles(session, asset_cfg.symbol, asset_cfg.timeframe,
                           start=min(times[0] for times in pending.values()), end=newest)
    rows = []
    for target in settings.targets:
        open_times = pending.get(target.key)
        if not open_times:
            continue
        candles = history[history.index >= pd.Timestamp(utc(open_times[0]))]
        # One vectorised labelling of the frame: row i looks only at the ``horizon`` candles
        # after it, so this is what resolve_first_touch gives for each entry, at once.
        labels = first_touch_labels(candles, target.pct, target.horizon)
        at = {t: i for i, t in enumerate(labels.index)}
        label_col, bars_col = labels["label"].to_numpy(), labels["bars"].to_numpy()
        for candle_time in open_times:
            i = at.get(pd.Timestamp(utc(candle_time)))
            if i is None:
                log.warning("%s: candle %s missing; cannot resolve", asset, candle_time)
                continue
            if label_col[i] == PENDING:
                continue
            rows.append({"asset": asset_cfg.symbol, "target": target.key,
                         "candle_time": candle_time, "label": int(label_col[i]),
                         "bars": int(bars_col[i]), "resolved_at": now})
    return rows


def store_outcomes(session: Session, settings: Settings, rows: list[dict]) -> int:
    """Insert outcome ``rows`` (one statement per target; a row whose key exists is skipped) and
    queue the alerts of the ones this call inserted; returns how many it inserted."""
    inserted: list[dict] = []
    for target in settings.targets:
        inserted += _insert_new(session, [r for r in rows if r["target"] == target.key])
    queue_outcome_alerts(session, settings, inserted)
    return len(inserted)


def _insert_new(session: Session, rows: list[dict]) -> list[dict]:
    """Insert ``rows`` in one statement (a row whose key exists is skipped); the rows this call
    inserted, in order."""
    inserted = {utc(t) for t in insert_new(session, Outcome, rows,
                                          keys=["asset", "target", "candle_time"],
                                          returning="candle_time")}
    return [row for row in rows if utc(row["candle_time"]) in inserted]
