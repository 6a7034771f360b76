"""Online learning from resolved outcomes, and drift on the champion's error stream.

Call :func:`learn_from_outcomes` after ``resolve_outcomes`` (the resolve task does).

Learning: every routed version of each target that learns online (the ``routing.online_family``
baseline, River, or an ensemble with a River member) learns each new UP/DOWN outcome with
``learn_one`` on that candle's features, recomputed from the stored candles with the same causal
feature code as the hot path. Only outcomes of candles after the version's training data are
learned, oldest first, in batches: a version learns once the oldest outcome it has not learned
resolved ``routing.learn_every_candles`` candles ago (default 24; :func:`versions_due`: one
unlocked read for all the versions of the asset, no model loaded or locked before then). Each
batch learned is **appended as a new state** of the version (:mod:`signalcast.lifecycle.states`:
``model_states``, signed like any artifact; state 0, the trained artifact, is kept before the
first update), never written over an earlier one; the version serves its newest state (workers
cache models by version id *and* sha256, so they load it at their next prediction) and every
prediction records the sha256 of the state that made it, so a past prediction is reproduced from
exactly that state. Each (version, candle) learned is recorded in ``online_learned`` in the same
transaction: an outcome is learned once, however often this runs. The version row is locked
while it learns (Postgres ``FOR UPDATE``; SQLite serialises writers), so two workers cannot lose
each other's updates or number two states alike.

Calibration: the direction calibrator fitted at training maps the *trained* model's outputs; a
River version that learns online is served by its own probabilities from its first state on (the
identity calibrator), which River keeps calibrated online (log-loss SGD for the logistic
variant, a prequential online Platt map for the tree variants: see
:mod:`signalcast.models.families.river`). The touch factor does not learn online, so its
calibrator still fits it. An ensemble with a River member keeps its stacked calibrator (the
ensemble's weights do not move; its River member calibrates itself).

Drift (:mod:`signalcast.pipeline.drift`): a self-starting CUSUM on the champion's
three-outcome Brier loss per non-overlapping block of ``horizon`` candles (ADWIN on 0/1 errors
of overlapping outcomes raised false alarms on a market whose law never changed), with an
incremental state per champion. An alarm writes a ``drift`` model event (audit row + ``model``
alert) and, with ``routing.drift_retrain``, enqueues a retrain of the champion's family through
the :class:`~signalcast.core.ports.Enqueuer` it was handed, after the event is committed, on the
full history or, with ``training.drift_window`` (off by default), on the recent candles only
(since shortly before the change point the CUSUM implies, at least ``training.drift_min_rows``
rows; the window is in the task's arguments and id); the retrain enters as a challenger and is
promoted only by the promotion test.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from signalcast.config import Settings, TargetConfig
from signalcast.config.settings import AssetConfig
from signalcast.core.ports import Enqueuer
from signalcast.core.timeframes import timeframe_to_timedelta, utc
from signalcast.core.versions import label
from signalcast.db.candles import read_candles
from signalcast.db.engine import session_scope
from signalcast.db.tables import ModelVersion, OnlineLearned, Outcome
from signalcast.db.upsert import upsert
from signalcast.features import (
    DOWN,
    FEATURE_SET,
    MAX_LOOKBACK,
    UP,
    compute_features,
    feature_names,
)
from signalcast.lifecycle.states import append_state
from signalcast.models import registry
from signalcast.models.artifact import load_version
from signalcast.models.calibration import MonotoneCalibrator
from signalcast.pipeline.drift import check_drift, targets_due
from signalcast.pipeline.resolve import RESOLVE_CATCH_UP
from signalcast.routing.overrides import apply_override, overrides_for
from signalcast.routing.router import make_lineup, newest, version_rows

log = logging.getLogger(__name__)
BATCH_AT = "online_batch_at"  # in a version's metrics: when its last batch ran (``now``)



@dataclass
class OnlineReport:
    asset: str
    learned: dict[str, int] = field(default_factory=dict)  # "1pct_24 river v2" -> outcomes
    drifts: list[dict] = field(default_factory=list)
    retrains: list[str] = field(default_factory=list)  # task ids enqueued

    def to_dict(self) -> dict:
        return asdict(self)


def learns_online(family: str, params: dict[str, Any]) -> bool:
    """Whether models of ``family`` with ``params`` can ``learn_one`` (River, or an ensemble
    with such a member)."""
    from signalcast.ensemble.base import EnsembleModel

    try:
        cls = registry.family_class(family)
    except Exception as exc:  # an uninstalled plugin: it cannot learn here
        log.warning("model family %s cannot be loaded: %s", family, exc)
        return False
    if issubclass(cls, EnsembleModel):
        return any(learns_online(m["family"], m.get("params", {}))
                   for m in params.get("members", []))
    return callable(getattr(cls, "learn_one", None))


def learn_from_outcomes(engine: Engine, settings: Settings, asset: str, now: datetime, *,
                        enqueuer: Enqueuer | None = None) -> OnlineReport:
    """Online models of ``asset`` learn the outcomes resolved by ``now``; drift on each
    champion's errors notifies and enqueues a retrain through ``enqueuer`` (none: the drift is
    recorded and alerted, the retrain cadence trains it). Safe to run twice: nothing is
    learned or enqueued again."""
    asset_cfg, now = settings.asset(asset), utc(now)
    report = OnlineReport(asset_cfg.symbol)
    # what is due, in one unlocked read-only session: most ticks learn nothing and complete no
    # drift block
    online: dict[str, list[int]] = {}
    due: set[int] = set()
    drifting: set[str] = set()
    with session_scope(engine, readonly=True) as session:
        if settings.routing.online_learning:
            online, versions = _online_versions(session, settings, asset_cfg.symbol)
            due = versions_due(session, settings, asset_cfg, versions, now)
        if settings.routing.drift_detection:
            drifting = targets_due(session, settings, asset_cfg.symbol, now)
    for target in settings.targets:
        if settings.routing.online_learning:
            for version_id in (vid for vid in online.get(target.key, []) if vid in due):
                name, learned = _learn(engine, settings, asset_cfg, target, version_id, now)
                if learned:
                    report.learned[f"{target.key} {name}"] = learned
        if target.key in drifting:
            drift = check_drift(engine, settings, asset_cfg.symbol, target.key, now)
            if drift is not None:
                report.drifts.append(drift)
                if settings.routing.drift_retrain:
                    report.retrains += _enqueue_retrain(asset_cfg.symbol, target.key,
                                                        drift["family"], now, enqueuer,
                                                        drift.get("retrain_candles"))
    return report


def _online_versions(session: Session, settings: Settings,
                     asset: str) -> tuple[dict[str, list[int]], list[tuple]]:
    """Per target of ``asset``: ids of its routed versions that learn online, plus the newest
    version of the online baseline family; and (id, target, train_end, metrics) of each of
    them, for :func:`versions_due` (one read of the asset's versions, its overrides and the
    chosen ones' details)."""
    rows = version_rows(session, asset)
    overrides = overrides_for(session, asset)
    chosen: dict[str, set[int]] = {}
    for target in settings.targets:
        versions = [v for v in rows if v.target == target.key]
        policy = apply_override(settings.routing.policy(target.key), overrides.get(target.key))
        routed = make_lineup(settings, policy, versions).versions()
        baseline = newest(versions, settings.routing.online_family)
        chosen[target.key] = {v.id for v in [*routed, *([baseline] if baseline else [])]}
    ids = set().union(*chosen.values())
    details = {row[0]: row for row in session.exec(select(
        ModelVersion.id, ModelVersion.params, ModelVersion.target, ModelVersion.train_end,
        ModelVersion.metrics).where(ModelVersion.id.in_(ids))).all()} if ids else {}
    families = {v.id: v.family for v in rows}
    online = {target: [vid for vid in sorted(vids) if vid in details
                       and learns_online(families[vid], details[vid][1])]
              for target, vids in chosen.items()}
    versions = [(vid, *details[vid][2:]) for vids in online.values() for vid in vids]
    return online, versions


def features_at(session: Session, asset: AssetConfig, times: Sequence[datetime]) -> np.ndarray:
    """Feature rows (len(times), d) of the candles at ``times`` from the stored candles (NaN
    rows where a candle or its history is missing)."""
    step = timeframe_to_timedelta(asset.timeframe)
    candles = read_candles(session, asset.symbol, asset.timeframe,
                           start=min(times) - MAX_LOOKBACK * step, end=max(times))
    if candles.empty:
        return np.full((len(times), len(feature_names())), np.nan)
    features = compute_features(candles, asset.timeframe)
    return features.reindex(pd.DatetimeIndex(list(times), name="time")).to_numpy()


def versions_due(session: Session, settings: Settings, asset: AssetConfig,
                 versions: Sequence[tuple], now: datetime) -> set[int]:
    """Which of ``versions`` ((id, target, train_end, metrics) of online versions of ``asset``
    with an artifact) learn now: a version is due once an UP/DOWN outcome of its target, of a
    candle after its training data, resolved after its last batch (``online_batch_at`` in its
    metrics; a batch learns every outcome resolved by its ``now``) and at least
    ``routing.learn_every_candles - 1`` candles before ``now`` (1: any new outcome). An outcome
    a batch could not learn (its candle has no features) does not make the version due again;
    the next batch tries it. One unlocked read of the outcomes for all of them."""
    if not versions:
        return set()
    step = timeframe_to_timedelta(asset.timeframe)
    wait = (settings.routing.learn_every_candles - 1) * step
    since = {vid: max(utc(train_end), _batch_at(metrics) or utc(train_end))
             for vid, _target, train_end, metrics in versions}
    # A tick resolves candles of the last horizon + RESOLVE_CATCH_UP candles only, so an
    # outcome resolved after ``since`` is of a candle at most that far before it: the read is
    # bounded however long ago the version was trained. (An older candle resolved by a
    # catch-up run does not make a version due; the next batch learns it all the same.)
    earliest = min(since.values())
    reach = (max(t.horizon for t in settings.targets) + RESOLVE_CATCH_UP) * step
    oldest_candle = max(min(utc(t) for _, _, t, _ in versions), earliest - reach)
    resolved = session.exec(select(Outcome.target, Outcome.candle_time, Outcome.resolved_at)
                            .where(Outcome.asset == asset.symbol,
                                   Outcome.target.in_({target for _, target, _, _ in versions}),
                                   Outcome.label.in_((UP, DOWN)),
                                   Outcome.candle_time > oldest_candle,
                                   Outcome.resolved_at > earliest,
                                   Outcome.resolved_at <= now - wait)).all()
    return {vid for vid, target, train_end, _ in versions
            if any(t == target and utc(candle) > utc(train_end) and utc(at) > since[vid]
                   for t, candle, at in resolved)}


def _batch_at(metrics: dict[str, Any] | None) -> datetime | None:
    stamp = (metrics or {}).get(BATCH_AT)
    return None if stamp is None else utc(datetime.fromisoformat(stamp))


def _learn(engine: Engine, settings: Settings, asset: AssetConfig, target: TargetConfig,
           version_id: int, now: datetime) -> tuple[str, int]:
    """Learn what ``version_id`` has not learned of the outcomes resolved by ``now``, as one
    new state (a batch: :func:`versions_due` decided it is time)."""
    with session_scope(engine) as session:
        version = session.exec(select(ModelVersion).where(ModelVersion.id == version_id)
                               .with_for_update()).one()
        if version.artifact is None:  # purged since the unlocked look
            return label(version), 0
        last = _batch_at(version.metrics)
        version.metrics = {**version.metrics,
                           BATCH_AT: (now if last is None else max(last, now)).isoformat()}
        learned = select(OnlineLearned.candle_time).where(
            OnlineLearned.model_version_id == version.id)
        todo = session.exec(select(Outcome.candle_time, Outcome.label).where(
            Outcome.asset == asset.symbol, Outcome.target == target.key,
            Outcome.label.in_((UP, DOWN)), Outcome.candle_time > version.train_end,
            Outcome.resolved_at <= now, Outcome.candle_time.not_in(learned))
            .order_by(Outcome.candle_time).limit(settings.routing.max_learn_per_run)).all()
        if not todo:
            return label(version), 0
        X = features_at(session, asset, [t for t, _ in todo])
        keys = settings.artifact_keys
        served = load_version(version, keys, feature_set=FEATURE_SET,
                              features=feature_names(), label=label(version))
        rows = []
        for (candle_time, outcome), x in zip(todo, X, strict=True):
            if not np.isfinite(x).all():
                log.warning("%s %s: no features for %s; outcome not learned", asset.symbol,
                            target.key, candle_time)
                continue
            served.model.learn_one(x, int(outcome == UP))
            rows.append({"model_version_id": version.id, "candle_time": candle_time,
                         "label": int(outcome), "learned_at": now})
        if not rows:
            return label(version), 0
        upsert(session, OnlineLearned, rows, keys=["model_version_id", "candle_time"])
        if version.family == "river":  # it calibrates itself online (module docstring)
            served.calibrator = MonotoneCalibrator()  # the identity
        total = int(version.metrics.get("online_learned", 0)) + len(rows)
        version.metrics = {**version.metrics, "online_learned": total,
                           "online_last_candle": rows[-1]["candle_time"].isoformat()}
        append_state(session, version, served.to_bytes(), keys, learned=total,
                     last_candle=rows[-1]["candle_time"], now=now)
        log.info("%s %s %s learned %d outcomes", asset.symbol, target.key, label(version),
                 len(rows))
        return label(version), len(rows)


def _enqueue_retrain(asset: str, target: str, family: str, now: datetime,
                     enqueuer: Enqueuer | None, window: int | None) -> list[str]:
    """Enqueue the drift retrain on the alarm's recent ``window`` of candles (None: the full
    history, as the scheduled retrain)."""
    if enqueuer is None:
        log.warning("drift retrain of %s %s %s not enqueued: no enqueuer here; the retrain "
                    "cadence will train it", asset, target, family)
        return []
    try:
        if window is None:
            return [enqueuer.train(asset, target, family, now)]
        return [enqueuer.train(asset, target, family, now, history_candles=window)]
    except Exception as exc:  # the drift is recorded and alerted; the retrain cadence
        log.error("drift retrain of %s %s %s not enqueued: %s", asset, target, family, exc)
        return []               # will train it: say so rather than fail the resolve task
