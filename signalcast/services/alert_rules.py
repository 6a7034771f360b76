"""Alert rules: when a served probability becomes an alert, and which chats receive it.

The prediction service calls :func:`queue_signal_alerts` inside its transaction, so a prediction
and its alerts commit together (the outbox pattern); the unique key (chat, asset, target,
candle, kind) makes a repeated prediction queue nothing new.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from signalcast.config import Settings, TargetConfig
from signalcast.db.tables import AlertOutbox, ModelVersion
from signalcast.db.upsert import insert_ignore

CONSOLE_CHAT = "console"


def alert_chats(settings: Settings) -> list[str]:
    chats = [CONSOLE_CHAT] if settings.alerts.console else []
    if settings.env.telegram_token is not None:
        chats += settings.telegram_chat_ids
    return chats


def queue_signal_alerts(session: Session, settings: Settings, payload: dict) -> int:
    """Write one outbox row per receiving chat; returns how many were new."""
    candle_time = datetime.fromisoformat(payload["candle_time"])
    return sum(int(insert_ignore(session, AlertOutbox, {
        "chat_id": chat, "asset": payload["asset"], "target": payload["target"],
        "candle_time": candle_time, "kind": "signal", "payload": payload,
    }, keys=["chat_id", "asset", "target", "candle_time", "kind"]))
        for chat in alert_chats(settings))


def signal_payload(asset: str, timeframe: str, target: TargetConfig, version: ModelVersion,
                   candle_time: datetime, price: float, p_up: float) -> dict | None:
    """The alert for this probability, or None when neither direction reaches the threshold."""
    direction, prob = ("UP", p_up) if p_up >= 0.5 else ("DOWN", 1.0 - p_up)
    if prob < target.alert_threshold:
        return None
    return {
        "asset": asset, "target": target.key, "pct": target.pct, "horizon": target.horizon,
        "timeframe": timeframe, "direction": direction, "probability": round(prob, 4),
        "threshold": target.alert_threshold, "model": f"{version.family} v{version.version}",
        "candle_time": candle_time.isoformat(), "price": price,
        "up_level": price * (1 + target.pct), "down_level": price * (1 - target.pct),
        "fallback": None, "conflict": False,
    }
