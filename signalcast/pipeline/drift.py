"""Drift on the champion's loss, block by block (:mod:`signalcast.stats.drift`).

Each (asset, target) champion has a :class:`~signalcast.db.tables.DriftState`: the newest block
of ``horizon`` candles it has counted and its CUSUM state. A call counts the blocks completed
since (a block is complete once every outcome of its candles has resolved: ``horizon`` candles
after its end), each in O(1), reading only the new blocks' predictions and outcomes; nothing is
rescanned. A block's loss is the mean three-outcome Brier of the champion's served or shadow
predictions on its candles (expired outcomes included); blocks with fewer than half their
candles predicted are skipped. An alarm writes a ``drift`` model event (audit row + ``model``
alert) with the statistics, and the caller enqueues a retrain of the champion's family, which
training stores as a challenger: it shadows the champion and is judged by the promotion test
like any retrain (the same path), never served directly. With ``training.drift_window`` (off by
default: the lifecycle bench measured no gain) that retrain reads only the recent candles: from
one block before the change point the CUSUM implies
(the first block of the rise that fired it; :func:`cusum_step`) to now, at least
``training.drift_min_rows`` usable rows (:func:`signalcast.lifecycle.train.drift_window`); the
alarm's stats carry ``change_point`` and ``retrain_candles`` and its reason says the window.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import defer
from sqlmodel import Session, select

from signalcast.config import Settings
from signalcast.core.timeframes import last_closed_open_time, timeframe_to_timedelta
from signalcast.core.versions import label
from signalcast.db.engine import session_scope
from signalcast.db.tables import DriftState, ModelVersion, Outcome, Prediction, utcnow
from signalcast.db.upsert import insert_ignore
from signalcast.features import UP
from signalcast.stats import drift as cusum

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def block_of(when: datetime, width_seconds: float) -> int:
    return math.floor((when - EPOCH).total_seconds() / width_seconds)


def newest_complete_block(now: datetime, width_seconds: float) -> int:
    """The newest block whose outcomes have all resolved by ``now`` (a block's outcomes
    resolve one block after it ends)."""
    return block_of(now, width_seconds) - 2


def targets_due(session: Session, settings: Settings, asset: str, now: datetime) -> set[str]:
    """The targets of ``asset`` whose champion may have completed a block by ``now`` (those
    without a drift state yet included): one unlocked read for all of them, so that most ticks,
    which complete no block, skip :func:`check_drift`'s reads per target."""
    step = timeframe_to_timedelta(settings.asset(asset).timeframe)
    rows = session.exec(select(ModelVersion.target, DriftState.last_block)
                        .outerjoin(DriftState, DriftState.model_version_id == ModelVersion.id)
                        .where(ModelVersion.asset == asset,
                               ModelVersion.role == "champion")).all()
    horizons = {t.key: t.horizon for t in settings.targets}
    return {target for target, seen in rows if target in horizons and (
        seen is None
        or newest_complete_block(now, (step * horizons[target]).total_seconds()) > seen)}


def check_drift(engine: Engine, settings: Settings, asset: str, target: str,
                now: datetime) -> dict | None:
    """Count the champion's newly completed blocks; the alarm's statistics, or None."""
    from signalcast.lifecycle.admin import record_model_event

    cfg, asset_cfg, routing = settings.target(target), settings.asset(asset), settings.routing
    width = (timeframe_to_timedelta(asset_cfg.timeframe) * cfg.horizon).total_seconds()
    with session_scope(engine) as session:
        champion = session.exec(select(ModelVersion).options(defer(ModelVersion.artifact))
                                .where(ModelVersion.asset == asset, ModelVersion.target == target,
                                       ModelVersion.role == "champion")).first()
        if champion is None:
            return None
        newest_complete = newest_complete_block(now, width)
        # most ticks complete no block: one unlocked read of the state says so (the locked
        # read below decides whenever a block may be due)
        seen = session.exec(select(DriftState.last_block).where(
            DriftState.model_version_id == champion.id)).first()
        if seen is not None and newest_complete <= seen:
            return None
        first = session.exec(select(Prediction.candle_time).where(
            Prediction.model_version_id == champion.id)
            .order_by(Prediction.candle_time).limit(1)).first()
        if first is None:
            return None
        insert_ignore(session, DriftState, {
            "model_version_id": champion.id, "last_block": block_of(first, width) - 1,
            "blocks": 0, "alarms": 0, "state": {}, "updated_at": utcnow()},
            keys=["model_version_id"])
        row = session.exec(select(DriftState).where(DriftState.model_version_id == champion.id)
                           .with_for_update()).one()
        if newest_complete <= row.last_block:
            return None
        start = EPOCH.timestamp() + (row.last_block + 1) * width
        end = EPOCH.timestamp() + (newest_complete + 1) * width
        rows = session.exec(select(Prediction.candle_time, Prediction.prob_up,
                                   Prediction.prob_down, Outcome.label)
                            .join(Outcome, (Outcome.asset == Prediction.asset)
                                  & (Outcome.target == Prediction.target)
                                  & (Outcome.candle_time == Prediction.candle_time))
                            .where(Prediction.model_version_id == champion.id,
                                   Prediction.candle_time >= datetime.fromtimestamp(start, UTC),
                                   Prediction.candle_time < datetime.fromtimestamp(end, UTC),
                                   Outcome.resolved_at <= now)
                            .order_by(Prediction.candle_time)).all()
        state = cusum.CusumState.from_dict(row.state.get("cusum"))
        rise = row.state.get("rise_block")  # the first block of the CUSUM's current rise
        reference = dict(row.state.get("reference", {"loss": [], "error": []}))
        by_block: dict[int, list[tuple[float, float]]] = {}
        for candle_time, p_up, p_down, outcome in rows:
            by_block.setdefault(block_of(candle_time, width), []).append(
                _loss_and_error(p_up, p_down, outcome))
        alarm = None
        for block in sorted(by_block):
            pairs = by_block[block]
            if len(pairs) < max(1, cfg.horizon // 2):
                continue
            loss = float(np.mean([p[0] for p in pairs]))
            error = float(np.mean([p[1] for p in pairs]))
            before = (state.mean, state.n, reference)
            row.blocks += 1
            fired, rise, change = cusum_step(state, rise, block, loss, routing)
            if fired:
                row.alarms += 1
                alarm = _alarm_stats(block, width, loss, error, before, routing)
                alarm.update(_retrain_window(settings, asset_cfg.timeframe, cfg.horizon, now,
                                             datetime.fromtimestamp(
                                                 EPOCH.timestamp() + change * width, UTC)))
                reference = {"loss": [], "error": []}
            else:
                reference = {"loss": (reference["loss"] + [loss])[-500:],
                             "error": (reference["error"] + [error])[-500:]}
        row.last_block = newest_complete
        row.state = {"cusum": state.to_dict(), "reference": reference, "rise_block": rise}
        row.updated_at = utcnow()
        session.add(row)
        if alarm is None:
            return None
        record_model_event(
            session, settings, "drift", asset, target, from_version=None,
            to_version=champion, actor="drift",
            reason=(f"block CUSUM on three-outcome Brier per {cfg.horizon}-candle block: loss "
                    f"{alarm['loss_before']:.3f} -> {alarm['loss_recent']:.3f} after "
                    f"{alarm['n_blocks']} steady blocks (h={alarm['threshold']:g}, "
                    f"k={alarm['slack']:g}; at {alarm['candle_time'][:16]} UTC; rise from "
                    f"{alarm['change_point'][:16]} UTC)" + _window_words(alarm, settings)),
            stats=alarm)
        log.warning("%s %s: drift in %s's loss at %s", asset, target, label(champion),
                    alarm["candle_time"])
        return {"target": target, "version": label(champion), "family": champion.family,
                **alarm}


def cusum_step(state: cusum.CusumState, rise: int | None, block: int, loss: float,
               routing) -> tuple[bool, int | None, int | None]:
    """One block through the champion's CUSUM (:func:`signalcast.stats.drift.update` with the
    routing settings), tracking where its current rise began: (alarm, rise, change block).
    ``rise`` is the first block of the current excursion above zero (None while the statistic
    is at zero); on an alarm the change block is that rise's first block (the classical CUSUM
    change-point estimate: the block after the statistic last stood at zero), or the alarm's
    own block when it rose and fired at once. The bench runs the same function."""
    fired = cusum.update(state, loss, warmup=routing.drift_warmup_blocks, k=routing.drift_slack,
                         h=routing.drift_threshold)
    if fired:
        return True, None, block if rise is None else rise
    if state.s <= 0.0:
        return False, None, None
    return False, block if rise is None else rise, None


def _retrain_window(settings: Settings, timeframe: str, horizon: int, now: datetime,
                    change_start: datetime) -> dict:
    """The window of the retrain this alarm queues (:func:`signalcast.lifecycle.train.
    drift_window`): candles from ``change_start`` to the newest closed candle at ``now``."""
    from signalcast.lifecycle.train import drift_window

    step = timeframe_to_timedelta(timeframe)
    newest = last_closed_open_time(now, timeframe)
    since = max(1, int((newest - change_start) / step) + 1)
    return {"change_point": change_start.isoformat(), "candles_since_change": since,
            "retrain_candles": drift_window(settings.training, horizon, since)}


def _window_words(alarm: dict, settings: Settings) -> str:
    if not settings.routing.drift_retrain:
        return ""
    if alarm["retrain_candles"] is None:
        return f"; retrain queued on the full {settings.training.history_candles} candles"
    return (f"; drift retrain queued on the last {alarm['retrain_candles']} candles (more if "
            "too few for the evidence)")


def _loss_and_error(p_up: float, p_down: float | None, outcome: int) -> tuple[float, float]:
    """Three-outcome Brier of one forecast, and whether its more likely direction was wrong
    (expired: counted wrong; it touched neither)."""
    down = 1.0 - p_up if p_down is None else p_down
    probs = np.array([p_up, down, max(0.0, 1.0 - p_up - down)])
    truth = np.array([outcome == UP, outcome == 0, outcome == -1], dtype=float)
    said_up = p_up >= down
    wrong = outcome == -1 or (outcome == UP) != said_up
    return float(np.sum((probs - truth) ** 2)), float(wrong)


def _alarm_stats(block: int, width: float, loss: float, error: float, before, routing) -> dict:
    mean, n, reference = before
    at = datetime.fromtimestamp(EPOCH.timestamp() + (block + 1) * width, UTC)
    errors = reference.get("error") or []
    return {"candle_time": at.isoformat(), "n_blocks": int(n), "loss_before": float(mean),
            "loss_recent": loss,
            "error_rate_before": float(np.mean(errors)) if errors else None,
            "error_rate_recent": error, "threshold": routing.drift_threshold,
            "slack": routing.drift_slack, "test": "self-starting cusum, block brier3"}
