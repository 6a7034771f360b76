"""The newest served prediction per (asset, target), as the bot's /signals and the dashboard
show it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import select

from signalcast.alerts.rules import confidence_band
from signalcast.config import Settings
from signalcast.core.versions import label
from signalcast.db.engine import session_scope
from signalcast.db.tables import ModelVersion, Prediction


def recent_signals(engine: Engine, settings: Settings,
                   asset: str | None = None) -> list[dict[str, Any]]:
    """The newest served prediction per (asset, target): direction, probability, band and
    whether it reached the alert threshold."""
    assets = [settings.asset(asset)] if asset else list(settings.assets)
    out = []
    with session_scope(engine, readonly=True) as session:
        for cfg in assets:
            for target in settings.targets:
                row = session.exec(select(Prediction, ModelVersion).join(ModelVersion).where(
                    Prediction.asset == cfg.symbol, Prediction.target == target.key,
                    Prediction.served).order_by(Prediction.candle_time.desc()).limit(1)).first()
                if row is None:
                    out.append({"asset": cfg.symbol, "target": target.key, "candle_time": None})
                    continue
                pred, version = row
                p_down = 1 - pred.prob_up if pred.prob_down is None else pred.prob_down
                direction, prob = ("UP", pred.prob_up) if pred.prob_up >= p_down else (
                    "DOWN", p_down)
                out.append({
                    "asset": cfg.symbol, "target": target.key, "candle_time": pred.candle_time,
                    "direction": direction, "probability": prob,
                    "band": confidence_band(prob, target.alert_threshold,
                                            settings.alerts.high_band_margin),
                    "alert": prob >= target.alert_threshold and pred.alert_held is None,
                    "held": pred.alert_held,
                    "model": label(version)})
    return out
