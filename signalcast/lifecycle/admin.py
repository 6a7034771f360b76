"""Champion models: list them, promote a version, roll back, and read the audit log.

Every champion change (a training that becomes champion, a promotion, a rollback) writes one
:class:`~signalcast.db.tables.ModelEvent` row (who, when, why, from/to version, statistics) and
queues a ``model`` alert, in the same transaction as the change itself. The bot and the CLI call
these functions; they return data and raise :class:`~signalcast.core.errors.SignalcastError` with a
message for people.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from signalcast.alerts.rules import queue_model_event_alert
from signalcast.config import Settings
from signalcast.core.errors import SignalcastError, UnknownNameError
from signalcast.core.versions import label, optional_label
from signalcast.db.engine import session_scope
from signalcast.db.tables import ModelEvent, ModelVersion, utcnow

CHAMPION_CHANGES = ("retrained", "promoted", "rolled_back")
_STAT_KEYS = ("auc", "brier", "n_calibration", "base_rate_up")


@dataclass(frozen=True)
class ModelInfo:
    id: int
    asset: str
    target: str
    family: str
    version: int
    role: str
    created_at: datetime
    metrics: dict[str, Any]
    has_artifact: bool

    @property
    def label(self) -> str:
        return label(self)


version_label = optional_label


def list_models(engine: Engine, settings: Settings, asset: str | None = None,
                target: str | None = None) -> list[ModelInfo]:
    """Versions per (asset, target), the champion first, then newest first. Artifacts are not
    loaded."""
    query = select(ModelVersion.id, ModelVersion.asset, ModelVersion.target, ModelVersion.family,
                   ModelVersion.version, ModelVersion.role, ModelVersion.created_at,
                   ModelVersion.metrics, ModelVersion.artifact.is_not(None))
    if asset is not None:
        query = query.where(ModelVersion.asset == settings.asset(asset).symbol)
    if target is not None:
        query = query.where(ModelVersion.target == settings.target(target).key)
    with session_scope(engine, readonly=True) as session:
        rows = [ModelInfo(*row) for row in session.exec(query).all()]
    return sorted(rows, key=lambda m: (m.asset, m.target, m.role != "champion",
                                       -m.created_at.timestamp(), m.family))


def history(engine: Engine, settings: Settings, asset: str, target: str,
            limit: int = 20) -> list[ModelEvent]:
    """The newest ``limit`` model events of (asset, target), newest first."""
    symbol, key = settings.asset(asset).symbol, settings.target(target).key
    with session_scope(engine, readonly=True) as session:
        return list(session.exec(select(ModelEvent).where(
            ModelEvent.asset == symbol, ModelEvent.target == key)
            .order_by(ModelEvent.id.desc()).limit(limit)).all())


def record_model_event(session: Session, settings: Settings, event: str, asset: str,
                       target: str, *, from_version: ModelVersion | None,
                       to_version: ModelVersion | None, actor: str, reason: str = "",
                       stats: Mapping[str, Any] | None = None) -> ModelEvent:
    """Write the audit row and queue its ``model`` alert (in the caller's transaction)."""
    if stats is None:
        stats = {"from": _stats(from_version), "to": _stats(to_version)}
    row = ModelEvent(asset=asset, target=target, event=event,
                     from_version_id=None if from_version is None else from_version.id,
                     to_version_id=None if to_version is None else to_version.id,
                     from_label=version_label(from_version), to_label=version_label(to_version),
                     actor=actor[:80], reason=reason[:500], stats=dict(stats), created_at=utcnow())
    session.add(row)
    session.flush()
    queue_model_event_alert(session, settings, event, asset, target, to_label=row.to_label,
                            from_label=row.from_label, actor=row.actor, reason=row.reason,
                            stats=row.stats, at=row.created_at)
    return row


def champion_trained(session: Session, settings: Settings, version: ModelVersion) -> ModelEvent:
    """Audit and announce a training that made ``version`` the champion. The version it
    replaced is the last recorded champion (none before the first recorded change)."""
    last = session.exec(select(ModelEvent).where(
        ModelEvent.asset == version.asset, ModelEvent.target == version.target,
        ModelEvent.event.in_(CHAMPION_CHANGES), ModelEvent.to_version_id != version.id)
        .order_by(ModelEvent.id.desc())).first()
    previous = None if last is None else session.get(ModelVersion, last.to_version_id)
    return record_model_event(session, settings, "retrained", version.asset, version.target,
                              from_version=previous, to_version=version, actor="training",
                              reason=f"trained on candles up to {version.train_end:%Y-%m-%d %H:%M}"
                                     " UTC")


class ChampionChanged(SignalcastError):
    """The champion a promotion was tested against no longer serves: nothing was decided."""


def promote_version(engine: Engine, settings: Settings, asset: str, target: str,
                    version: str | int, actor: str, reason: str = "", *,
                    expect_champion_id: int | None = None,
                    test: Mapping[str, Any] | None = None) -> ModelEvent:
    """Make ``version`` (``3``, ``v3``, ``lightgbm:3`` or ``lightgbm v3``) the champion.

    ``expect_champion_id`` fences an automatic promotion: when the champion is no longer that
    version (an operator or another round changed it after the test ran), nothing changes and
    :class:`ChampionChanged` says so. ``test``: the statistics of the promotion test, kept on
    the audit row and in its announcement."""
    symbol, key = settings.asset(asset).symbol, settings.target(target).key
    with session_scope(engine) as session:
        versions = _lock_versions(session, symbol, key)
        chosen = _find_version(versions, str(version), symbol, key)
        current = next((v for v in versions if v.role == "champion"), None)
        if expect_champion_id is not None and (current is None
                                               or current.id != expect_champion_id):
            raise ChampionChanged(
                f"{symbol} {key}: the champion changed to {version_label(current)} since the "
                f"test of {version_label(chosen)}; nothing decided, the next round re-tests")
        if current is not None and current.id == chosen.id:
            raise SignalcastError(f"{symbol} {key}: {version_label(chosen)} is already the "
                                  "champion")
        return _make_champion(session, settings, "promoted", current, chosen, actor,
                              reason or "promoted by hand", test=test)


def rollback(engine: Engine, settings: Settings, asset: str, target: str, actor: str,
             reason: str = "") -> ModelEvent:
    """Give the champion role back to the version the current champion replaced (by the audit
    log; without one, the newest earlier champion that still has its artifact). Rollback moves
    only within the champion history: never to a shadow that never served."""
    symbol, key = settings.asset(asset).symbol, settings.target(target).key
    with session_scope(engine) as session:
        versions = _lock_versions(session, symbol, key)
        current = next((v for v in versions if v.role == "champion"), None)
        if current is None:
            raise SignalcastError(f"{symbol} {key} has no champion to roll back; train one")
        previous = _replaced_by(session, versions, current)
        if previous is None:
            raise SignalcastError(f"{symbol} {key}: no earlier version (champion) with an artifact "
                                  f"to roll back to from {version_label(current)}")
        return _make_champion(session, settings, "rolled_back", current, previous, actor,
                              reason or "rolled back by hand")


# -- internals ---------------------------------------------------------------------------------


def _stats(version: ModelVersion | None) -> dict[str, Any]:
    if version is None:
        return {}
    return {k: version.metrics[k] for k in _STAT_KEYS if version.metrics.get(k) is not None}


def _lock_versions(session: Session, asset: str, target: str) -> list[ModelVersion]:
    """Every version of (asset, target), newest first, locked for this transaction on Postgres
    (SQLite's BEGIN IMMEDIATE already serialises writers), so two concurrent promotions cannot
    leave two champions."""
    return list(session.exec(select(ModelVersion).where(
        ModelVersion.asset == asset, ModelVersion.target == target)
        .order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
        .with_for_update()).all())


# "3", "v3", "lightgbm:3", "lightgbm v3", "lightgbm-v3", "lightgbmv3"
_SPEC = re.compile(r"(?:(?P<family>[A-Za-z_]\w*?)(?:[\s:-]+v?|v)|v)?(?P<number>\d+)", re.I)


def _find_version(versions: list[ModelVersion], spec: str, asset: str,
                  target: str) -> ModelVersion:
    known = [f"{v.family}:{v.version}" for v in versions if v.artifact is not None]
    match = _SPEC.fullmatch(spec.strip())
    found = [] if match is None else [
        v for v in versions if v.version == int(match["number"])
        and (match["family"] is None or v.family == match["family"]) and v.artifact is not None]
    if len(found) != 1:
        raise UnknownNameError(f"version of {asset} {target}", spec, known)
    return found[0]


def champion_history(session: Session, asset: str, target: str) -> list[int]:
    """Ids of the versions that have held the champion role of (asset, target), the current
    one first, then by their latest term, newest first (from the audit log)."""
    ids = [v for v in session.exec(select(ModelVersion.id).where(
        ModelVersion.asset == asset, ModelVersion.target == target,
        ModelVersion.role == "champion")).all()]
    for to_id, from_id in session.exec(select(ModelEvent.to_version_id,
                                              ModelEvent.from_version_id).where(
            ModelEvent.asset == asset, ModelEvent.target == target,
            ModelEvent.event.in_(CHAMPION_CHANGES)).order_by(ModelEvent.id.desc())).all():
        for held in (to_id, from_id):  # both sides of a champion change held the role
            if held is not None and held not in ids:
                ids.append(held)
    return ids


def _replaced_by(session: Session, versions: list[ModelVersion],
                 current: ModelVersion) -> ModelVersion | None:
    """The version ``current`` replaced when it became champion by training or promotion;
    without one (or its artifact), the newest earlier champion, trained before it, that has its
    artifact."""
    by_id = {v.id: v for v in versions}
    made = session.exec(select(ModelEvent).where(
        ModelEvent.to_version_id == current.id, ModelEvent.event.in_(("retrained", "promoted")))
        .order_by(ModelEvent.id.desc())).first()
    if made is not None and made.from_version_id in by_id:
        candidate = by_id[made.from_version_id]
        if candidate.artifact is not None:
            return candidate
    earlier = [by_id[i] for i in champion_history(session, current.asset, current.target)
               if i in by_id and i != current.id]
    return next((v for v in earlier if v.artifact is not None
                 and v.created_at <= current.created_at), None)


def _make_champion(session: Session, settings: Settings, event: str,
                   current: ModelVersion | None, chosen: ModelVersion, actor: str,
                   reason: str, test: Mapping[str, Any] | None = None) -> ModelEvent:
    session.execute(update(ModelVersion).where(
        ModelVersion.asset == chosen.asset, ModelVersion.target == chosen.target,
        ModelVersion.role == "champion").values(role="retired"))
    session.execute(update(ModelVersion).where(ModelVersion.id == chosen.id)
                    .values(role="champion"))
    stats = {"from": _stats(current), "to": _stats(chosen)}
    if test is not None:
        stats["promotion_test"] = dict(test)
    return record_model_event(session, settings, event, chosen.asset, chosen.target,
                              from_version=current, to_version=chosen, actor=actor,
                              reason=reason, stats=stats)
