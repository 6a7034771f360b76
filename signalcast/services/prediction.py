"""Predict every target of one asset at one closed candle.

Features are computed once for the candle and shared by all targets. Each target's champion
serves; its prediction and any alert rows are written in one transaction, keyed so that running
the same prediction twice inserts nothing new.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlmodel import Session, select

from signalcast.config import Settings
from signalcast.db.tables import ModelVersion, Prediction
from signalcast.db.upsert import insert_ignore
from signalcast.errors import ArtifactError, DataError
from signalcast.features import FEATURE_SET, MAX_LOOKBACK, feature_names, latest_features
from signalcast.models.artifact import ServedModel, load_artifact
from signalcast.services.alert_rules import queue_signal_alerts, signal_payload
from signalcast.services.candles import read_candles
from signalcast.timeframes import utc

log = logging.getLogger(__name__)

_cache: dict[int, ServedModel] = {}
_cache_lock = threading.Lock()
CACHE_SIZE = 256


def served_model(version: ModelVersion) -> ServedModel:
    """The loaded model for ``version``, verified once and then kept in this process."""
    with _cache_lock:
        cached = _cache.get(version.id)
    if cached is not None:
        return cached
    if version.artifact is None:
        raise ArtifactError(f"{_label(version)}: its artifact was purged; retrain or roll back")
    model = load_artifact(version.artifact, version.sha256, feature_set=FEATURE_SET,
                          features=feature_names(), label=_label(version))
    with _cache_lock:
        if len(_cache) >= CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[version.id] = model
    return model


def _label(version: ModelVersion) -> str:
    return f"{version.asset} {version.target} {version.family} v{version.version}"


@dataclass
class PredictResult:
    asset: str
    candle_time: datetime
    predictions: int = 0  # rows inserted by this call
    alerts: int = 0  # outbox rows inserted by this call
    skipped: dict[str, str] = field(default_factory=dict)  # target -> why nothing was served

    def to_dict(self) -> dict:
        return {"asset": self.asset, "candle_time": self.candle_time.isoformat(),
                "predictions": self.predictions, "alerts": self.alerts, "skipped": self.skipped}


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
    price = float(candles["close"].iloc[-1])

    for target in settings.targets:
        champion = session.exec(select(ModelVersion).where(
            ModelVersion.asset == asset_cfg.symbol, ModelVersion.target == target.key,
            ModelVersion.role == "champion")).first()
        if champion is None:
            result.skipped[target.key] = "no champion model; train one"
            continue
        try:
            p_up = float(served_model(champion).predict(x)[0])
        except (ArtifactError, ValueError) as exc:
            log.error("%s: cannot serve: %s", _label(champion), exc)
            result.skipped[target.key] = str(exc)
            continue
        if not np.isfinite(p_up):
            result.skipped[target.key] = f"{_label(champion)} returned {p_up}"
            continue
        inserted = insert_ignore(session, Prediction, {
            "asset": asset_cfg.symbol, "target": target.key, "model_version_id": champion.id,
            "candle_time": candle_time, "prob_up": p_up, "served": True, "role": "champion",
        }, keys=["asset", "target", "model_version_id", "candle_time"])
        result.predictions += int(inserted)
        payload = signal_payload(asset_cfg.symbol, asset_cfg.timeframe, target, champion,
                                 candle_time, price, p_up)
        if payload is not None:
            result.alerts += queue_signal_alerts(session, settings, payload)
    return result
