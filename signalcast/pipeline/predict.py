"""Predict every target of one asset at one closed candle.

Features are computed once for the candle and shared by all targets and models. For each target
the router (:mod:`signalcast.routing.router`) decides which version serves (champion, A/B
challenger or a fallback) and which others predict in shadow; their predictions and any alert
rows are written in one transaction, keyed (asset, target, model version, candle) so that running
the same prediction twice inserts nothing new. A target whose served prediction exists already
(a redelivered task) is not decided again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from signalcast.alerts.gate import signal_gate
from signalcast.alerts.rules import (
    queue_model_event_alert,
    queue_signal_alerts,
    signal_payload,
)
from signalcast.config import AssetConfig, Settings, TargetConfig
from signalcast.core.errors import ArtifactError, DataError, UnknownNameError
from signalcast.core.timeframes import utc
from signalcast.core.versions import VersionRef, label
from signalcast.db.candles import read_candles, read_latest_candles
from signalcast.db.engine import session_scope
from signalcast.db.tables import ModelVersion, Prediction
from signalcast.db.upsert import insert_new, upsert
from signalcast.features import FEATURE_SET, MAX_LOOKBACK, feature_names, latest_features
from signalcast.lifecycle.states import artifact_by_sha256
from signalcast.models.artifact import ArtifactIdentity, ArtifactKeys, ServedModel, load_artifact
from signalcast.pipeline.model_cache import DEFAULT_BYTES, ModelCache
from signalcast.routing.breaker import apply_pending
from signalcast.routing.router import (
    Decision,
    ModelOutput,
    Router,
    RouterReads,
    model_output,
    router_reads,
)

log = logging.getLogger(__name__)
PREDICTION_KEY = ["asset", "target", "model_version_id", "candle_time"]

# Loaded models by (version id, sha256), each authenticated (its MAC checked) when loaded,
# bounded by artifact bytes (256 MiB per process), least recently used first.
# An online model's new state has a new sha256 and is loaded again; a rollback or
# promotion is served at the next candle (roles are read from the database on every prediction).
_cache = ModelCache(DEFAULT_BYTES)


def served_model(version: ModelVersion, keys: ArtifactKeys) -> ServedModel:
    """The loaded model for ``version``, verified once and then kept in this process."""
    cached = _cached(version.id, version.sha256)
    if cached is not None:
        return cached
    return _load(version, version.artifact, version.sha256, version.artifact_mac, keys)


def routed_model(session: Session, version: VersionRef, keys: ArtifactKeys) -> ServedModel:
    """:func:`served_model` for the router's light version rows: the artifact is read only
    when this process has not loaded this (version, sha256) yet; bytes and checksum are read
    together, so an online update committed meanwhile cannot mismatch them."""
    cached = _cached(version.id, version.sha256)
    if cached is not None:
        return cached
    artifact, checksum, mac = session.exec(select(
        ModelVersion.artifact, ModelVersion.sha256, ModelVersion.artifact_mac).where(
        ModelVersion.id == version.id)).one()
    if checksum != version.sha256:  # a newer online state since the line-up was read: serve
        stored = artifact_by_sha256(session, version.id, version.sha256)  # the one the
        if stored is not None:  # prediction will name (model_sha256)
            artifact, checksum, mac = stored.artifact, stored.sha256, stored.artifact_mac
    return _load(version, artifact, checksum, mac, keys)


def _cached(version_id: int, checksum: str) -> ServedModel | None:
    return _cache.get((version_id, checksum))


def _load(version: ModelVersion | VersionRef, artifact: bytes | None, checksum: str,
          mac: str | None, keys: ArtifactKeys) -> ServedModel:
    """Authenticate (the row's identity, family and MAC) and load; the row's family loads it."""
    name, version_id = _label(version), version.id
    if artifact is None:
        raise ArtifactError(f"{name}: its artifact was purged; retrain or roll back")
    model = load_artifact(artifact, checksum, mac=mac, identity=ArtifactIdentity.of(version),
                          keys=keys, feature_set=FEATURE_SET, features=feature_names(),
                          label=name)
    _cache.put((version_id, checksum), model, len(artifact), replaces=version_id)
    return model


def _label(version: ModelVersion | VersionRef) -> str:
    return f"{version.asset} {version.target} {version.family} v{version.version}"


@dataclass
class PredictResult:
    asset: str
    candle_time: datetime
    predictions: int = 0  # rows inserted by this call (served and shadow)
    alerts: int = 0  # outbox rows inserted by this call
    skipped: dict[str, str] = field(default_factory=dict)  # target -> why nothing was served
    served: dict[str, str] = field(default_factory=dict)  # target -> "lightgbm v3 (champion)"
    fallbacks: dict[str, str] = field(default_factory=dict)  # target -> what failed and why
    conflicts: list[str] = field(default_factory=list)  # targets whose ensemble members disagree
    held: dict[str, str] = field(default_factory=dict)  # target -> why its alert was held

    def to_dict(self) -> dict:
        return {"asset": self.asset, "candle_time": self.candle_time.isoformat(),
                "predictions": self.predictions, "alerts": self.alerts, "skipped": self.skipped,
                "served": self.served, "fallbacks": self.fallbacks, "conflicts": self.conflicts,
                "held": self.held}


def predict_asset(session: Session, settings: Settings, asset: str,
                  candle_time: datetime) -> PredictResult:
    """Predict every target of ``asset`` at ``candle_time`` in ``session``'s transaction; the
    tasks use :func:`predict_candle` (the same, its reads and model calls outside the write
    transaction)."""
    return store_predictions(session, settings,
                             plan_predictions(session, settings, asset, candle_time))


def predict_candle(engine: Engine, settings: Settings, asset: str, candle_time: datetime, *,
                   before_commit: Callable[[Session, PredictResult], None] | None = None
                   ) -> PredictResult:
    """:func:`predict_asset` in two transactions: the reads, the features, the routing and the
    model calls in a read-only one, then the rows, the breaker changes and the alerts in a
    short write one. On SQLite a write transaction holds the file's one write lock from its
    start (``BEGIN IMMEDIATE``), so model calls inside it made every other process wait (a
    second predict worker, a parallel replay). What another run of the same prediction stored
    in between wins (:func:`store_predictions`), so nothing is doubled.

    ``before_commit(session, result)`` runs last in the write transaction (the task records
    its run done there, so the record and the rows commit together)."""
    with session_scope(engine, readonly=True) as session:
        plan = plan_predictions(session, settings, asset, candle_time, defer=True)
    with session_scope(engine) as session:
        result = store_predictions(session, settings, plan)
        if before_commit is not None:
            before_commit(session, result)
        return result


def predict_candles(engine: Engine, settings: Settings, assets: list[str],
                    candle_time: datetime, *,
                    before_commit: Callable[[Session, dict], None] | None = None) -> dict:
    """:func:`predict_candle` for several assets at one candle (a tick's batch,
    ``schedule.tick_batch_assets``) in the same two transactions: every asset's reads and
    model calls in one read-only one, every asset's rows, breaker changes and alerts in one
    write one. An asset whose candle is not stored (its ingest failed) or that is no longer
    configured is reported under ``failed`` and predicts nothing; the others are stored.
    Returns ``{"candle_time", "predictions", "alerts", "assets": {asset: result}, "failed"}``;
    ``before_commit(session, that)`` runs last in the write transaction."""
    candle_time = utc(candle_time)
    out: dict = {"candle_time": candle_time.isoformat(), "predictions": 0, "alerts": 0,
                 "assets": {}, "failed": {}}

    def failed(asset: str, exc: Exception) -> None:
        log.warning("%s at %s: not predicted: %s", asset, out["candle_time"], exc)
        out["failed"][asset] = f"{type(exc).__name__}: {exc}"[:500]

    configured: dict[str, list[str]] = {}  # timeframe -> symbols
    for asset in assets:
        try:
            cfg = settings.asset(asset)
        except UnknownNameError as exc:
            failed(asset, exc)
            continue
        configured.setdefault(cfg.timeframe, []).append(cfg.symbol)
    symbols = [a for group in configured.values() for a in group]
    plans: list[PredictPlan] = []
    with session_scope(engine, readonly=True) as session:
        frames = {a: frame for tf, group in configured.items()  # one bounded read per timeframe
                  for a, frame in read_latest_candles(session, group, tf, end=candle_time,
                                                      limit=MAX_LOOKBACK + 1).items()}
        recorded = _recorded(session, settings, symbols, candle_time)
        reads = router_reads(session, symbols)
        for asset in symbols:
            try:
                plans.append(plan_predictions(session, settings, asset, candle_time,
                                              defer=True, candles=frames[asset],
                                              recorded=recorded.get(asset, {}),
                                              reads=reads[asset]))
            except DataError as exc:
                failed(asset, exc)
    with session_scope(engine) as session:
        for plan in plans:
            apply_pending(session, plan.breaker_writes or [])
        stored = _recorded(session, settings, [p.result.asset for p in plans], candle_time)
        rows = []
        for plan in plans:
            rows += _decide(session, settings, plan, stored.get(plan.result.asset, {}))
        inserted = Counter(insert_new(session, Prediction, rows, keys=PREDICTION_KEY,
                                      returning="asset"))
        for plan in plans:
            result = plan.result
            result.predictions = inserted[result.asset]
            out["assets"][result.asset] = result.to_dict()
            out["predictions"] += result.predictions
            out["alerts"] += result.alerts
        if before_commit is not None:
            before_commit(session, out)
    return out


@dataclass
class PredictPlan:
    """What a prediction decided from its reads and model calls; :func:`store_predictions`
    writes it."""

    result: PredictResult
    asset: AssetConfig
    price: float = float("nan")
    decisions: list[tuple[TargetConfig, Decision]] = field(default_factory=list)
    recorded: dict[str, dict[int, bool]] = field(default_factory=dict)  # stored before
    breaker_writes: list | None = None  # deferred breaker changes (None: written already)


def plan_predictions(session: Session, settings: Settings, asset: str, candle_time: datetime,
                     *, defer: bool = False, candles: pd.DataFrame | None = None,
                     recorded: dict[str, dict[int, bool]] | None = None,
                     reads: RouterReads | None = None) -> PredictPlan:
    """Read, compute the features once and let the router decide every target (model calls
    included). ``defer``: write nothing (breaker changes are kept in the plan), for a
    read-only transaction. ``candles``, ``recorded`` (this asset's part of
    :func:`_recorded`) and the router's ``reads``: read already, for a batch."""
    asset_cfg = settings.asset(asset)
    candle_time = utc(candle_time)
    if candles is None:
        candles = read_candles(session, asset_cfg.symbol, asset_cfg.timeframe, end=candle_time,
                               limit=MAX_LOOKBACK + 1)
    if candles.empty or candles.index[-1] != candle_time:
        raise DataError(f"{asset_cfg.symbol}: candle {candle_time.isoformat()} is not stored; "
                        "ingest it before predicting")
    plan = PredictPlan(PredictResult(asset_cfg.symbol, candle_time), asset_cfg)
    if len(candles) < MAX_LOOKBACK + 1:
        plan.result.skipped = {t.key: f"needs {MAX_LOOKBACK + 1} candles of history, has "
                               f"{len(candles)}" for t in settings.targets}
        return plan
    x = latest_features(candles, asset_cfg.timeframe).reshape(1, -1)
    keys = settings.artifact_keys  # no key: a ConfigError, not a fallback (nothing could serve)
    plan.price = float(candles["close"].iloc[-1])

    def predict(version: VersionRef) -> ModelOutput:
        return model_output(routed_model(session, version, keys), x)

    plan.recorded = (recorded if recorded is not None else _recorded(
        session, settings, [asset_cfg.symbol], candle_time).get(asset_cfg.symbol, {}))
    router = Router(session, settings, asset_cfg.symbol, candle_time, lock=not defer,
                    defer=defer, reads=reads)
    for target in settings.targets:
        before = plan.recorded.get(target.key, {})
        plan.decisions.append((target, router.decide(
            target.key, predict, already_served=any(before.values()), recorded=set(before))))
    plan.breaker_writes = router.breakers.pending
    return plan


def _recorded(session: Session, settings: Settings, assets: list[str],
              candle_time: datetime) -> dict[str, dict[str, dict[int, bool]]]:
    """Per asset, per target: the versions with a stored prediction at ``candle_time`` (and
    whether it was served); one query for all ``assets``."""
    recorded: dict[str, dict[str, dict[int, bool]]] = {}
    if not assets:
        return recorded
    for asset, target_key, version_id, served in session.exec(
            select(Prediction.asset, Prediction.target, Prediction.model_version_id,
                   Prediction.served).where(
                col(Prediction.asset).in_(assets),  # the targets too: the lookup index applies
                col(Prediction.target).in_([t.key for t in settings.targets]),
                Prediction.candle_time == candle_time)):
        recorded.setdefault(asset, {}).setdefault(target_key, {})[version_id] = served
    return recorded


def store_predictions(session: Session, settings: Settings, plan: PredictPlan) -> PredictResult:
    """Write what ``plan`` decided: its rows (keyed, so a rerun inserts nothing), its breaker
    changes and its alerts. A plan decided in an earlier transaction (``defer``) first looks
    again at what is stored: a target another run served meanwhile keeps that run's served
    row and alerts (this plan adds only its shadow rows, which the keys dedupe)."""
    recorded = plan.recorded
    if plan.breaker_writes is not None:
        apply_pending(session, plan.breaker_writes)
        recorded = _recorded(session, settings, [plan.asset.symbol],
                             plan.result.candle_time).get(plan.asset.symbol, {})
    rows = _decide(session, settings, plan, recorded)
    if rows:
        plan.result.predictions = upsert(session, Prediction, rows, keys=PREDICTION_KEY)
    return plan.result


def _decide(session: Session, settings: Settings, plan: PredictPlan,
            recorded: dict[str, dict[int, bool]]) -> list[dict]:
    """The rows of ``plan`` to insert, given what is ``recorded`` now; queues the alerts of
    the targets this plan serves and fills in its result (all but the inserted count)."""
    result, asset_cfg, candle_time = plan.result, plan.asset, plan.result.candle_time
    rows: list[dict] = []
    for target, decision in plan.decisions:
        target_rows = _prediction_rows(asset_cfg.symbol, candle_time, decision)
        if any(recorded.get(target.key, {}).values()):
            # decided by an earlier run (its alerts were queued with it), or by one that
            # stored first while this plan was made: its served row stands
            rows += [r for r in target_rows if not r["served"]]
            continue
        rows += target_rows
        if decision.fallback:
            result.fallbacks[target.key] = decision.fallback
            log.warning("%s %s at %s: fallback: %s", asset_cfg.symbol, target.key,
                        candle_time.isoformat(), decision.fallback)
        if decision.served is None:
            result.skipped[target.key] = decision.fallback or "no champion model; train one"
            if decision.failures:  # models exist but none could serve: tell the operator
                result.alerts += _operator_alert(session, settings, asset_cfg.symbol, decision,
                                                 candle_time, "fallback",
                                                 "no signal: " + decision.fallback)
            continue
        result.served[target.key] = f"{label(decision.served)} ({decision.role})"
        if decision.breaker_opened:
            result.alerts += _operator_alert(
                session, settings, asset_cfg.symbol, decision, candle_time, "breaker_open",
                f"circuit opened for {', '.join(decision.breaker_opened)}; served by "
                f"{label(decision.served)}"
                + (f" after: {decision.fallback}" if decision.fallback else ""))
        if decision.output.conflict:
            result.conflicts.append(target.key)
        payload = signal_payload(asset_cfg.symbol, asset_cfg.timeframe, target, decision.served,
                                 candle_time, plan.price, decision.output.p_up,
                                 decision.output.down)
        if payload is not None:
            payload.update(fallback=decision.fallback, conflict=decision.output.conflict)
            gate = signal_gate(session, settings, asset_cfg.symbol, target.key,
                               decision.served.id)
            if not gate.open:  # recorded, not alerted: the served row says why
                result.held[target.key] = gate.reason
                target_rows[0]["alert_held"] = gate.reason[:200]  # the served row is first
                continue
            result.alerts += queue_signal_alerts(session, settings, payload, gate=gate)
    return rows


def _prediction_rows(asset: str, candle_time: datetime, decision: Decision) -> list[dict]:
    rows = []
    if decision.served is not None:
        rows.append({"asset": asset, "target": decision.target,
                     "model_version_id": decision.served.id, "candle_time": candle_time,
                     "prob_up": decision.output.p_up, "prob_down": decision.output.down,
                     "served": True, "role": decision.role, "fallback": decision.fallback,
                     "alert_held": None, "model_sha256": decision.served.sha256})
    rows += [{"asset": asset, "target": decision.target, "model_version_id": version.id,
              "candle_time": candle_time, "prob_up": output.p_up, "prob_down": output.down,
              "served": False, "role": role, "fallback": None, "alert_held": None,
              "model_sha256": version.sha256}
             for version, role, output in decision.unserved]
    return rows


def _operator_alert(session: Session, settings: Settings, asset: str, decision: Decision,
                    candle_time: datetime, event: str, reason: str) -> int:
    """A ``model`` alert for the operator, keyed by the candle time (a rerun queues nothing)."""
    return queue_model_event_alert(
        session, settings, event, asset, decision.target,
        to_label=None if decision.served is None else label(decision.served), actor="router",
        reason=reason[:500], stats={"candle_time": candle_time.isoformat(),
                                    "failures": decision.failures},
        at=candle_time)
