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
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, select

from signalcast.alerts.gate import signal_gate
from signalcast.alerts.rules import (
    queue_model_event_alert,
    queue_signal_alerts,
    signal_payload,
)
from signalcast.config import Settings
from signalcast.core.errors import ArtifactError, DataError
from signalcast.core.timeframes import utc
from signalcast.core.versions import VersionRef, label
from signalcast.db.candles import read_candles
from signalcast.db.tables import ModelVersion, Prediction
from signalcast.db.upsert import upsert
from signalcast.features import FEATURE_SET, MAX_LOOKBACK, feature_names, latest_features
from signalcast.lifecycle.states import artifact_by_sha256
from signalcast.models.artifact import ArtifactIdentity, ArtifactKeys, ServedModel, load_artifact
from signalcast.pipeline.model_cache import DEFAULT_BYTES, ModelCache
from signalcast.routing.router import Decision, ModelOutput, Router, model_output

log = logging.getLogger(__name__)

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
    asset_cfg = settings.asset(asset)
    candle_time = utc(candle_time)
    candles = read_candles(session, asset_cfg.symbol, asset_cfg.timeframe, end=candle_time,
                           limit=MAX_LOOKBACK + 1)
    if candles.empty or candles.index[-1] != candle_time:
        raise DataError(f"{asset_cfg.symbol}: candle {candle_time.isoformat()} is not stored; "
                        "ingest it before predicting")
    result = PredictResult(asset_cfg.symbol, candle_time)
    if len(candles) < MAX_LOOKBACK + 1:
        result.skipped = {t.key: f"needs {MAX_LOOKBACK + 1} candles of history, has "
                          f"{len(candles)}" for t in settings.targets}
        return result
    x = latest_features(candles, asset_cfg.timeframe).reshape(1, -1)
    keys = settings.artifact_keys  # no key: a ConfigError, not a fallback (nothing could serve)
    price = float(candles["close"].iloc[-1])

    def predict(version: VersionRef) -> ModelOutput:
        return model_output(routed_model(session, version, keys), x)

    recorded: dict[str, dict[int, bool]] = {}
    for target_key, version_id, served in session.exec(
            select(Prediction.target, Prediction.model_version_id, Prediction.served).where(
                Prediction.asset == asset_cfg.symbol,  # the targets too: the lookup index
                Prediction.target.in_([t.key for t in settings.targets]),  # applies
                Prediction.candle_time == candle_time)):
        recorded.setdefault(target_key, {})[version_id] = served

    router = Router(session, settings, asset_cfg.symbol, candle_time)
    rows: list[dict] = []
    for target in settings.targets:
        before = recorded.get(target.key, {})
        decision = router.decide(target.key, predict, already_served=any(before.values()),
                                 recorded=set(before))
        rows += _prediction_rows(asset_cfg.symbol, candle_time, decision)
        if any(before.values()):
            continue  # decided by an earlier run: its alerts were queued with it
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
                                 candle_time, price, decision.output.p_up,
                                 decision.output.down)
        if payload is not None:
            payload.update(fallback=decision.fallback, conflict=decision.output.conflict)
            gate = signal_gate(session, settings, asset_cfg.symbol, target.key,
                               decision.served.id)
            if not gate.open:  # recorded, not alerted: the served row says why
                result.held[target.key] = gate.reason
                served_row = rows[len(rows) - 1 - len(decision.unserved)]
                served_row["alert_held"] = gate.reason[:200]
                continue
            result.alerts += queue_signal_alerts(session, settings, payload, gate=gate)
    if rows:
        result.predictions = upsert(session, Prediction, rows,
                                    keys=["asset", "target", "model_version_id", "candle_time"])
    return result


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
