"""Alert payload -> message text, as Telegram HTML or plain console text.

An alert payload is a plain JSON-able dict stored in the outbox, so this module knows nothing of
transports: the drainer asks for HTML (Telegram) or plain text (console) and sends the string.

Telegram's HTML parse mode needs ``<``, ``>`` and ``&`` escaped; it is chosen over MarkdownV2,
where names like ``BTC/USDT`` or ``1.5%`` would need escaping of many more characters. Every
dynamic value goes through ``html.escape``: an unescaped ``<`` in an asset name would make
Telegram refuse the whole message.

>>> payload = {"asset": "BTC/USDT", "target": "2pct_72", "pct": 0.02, "horizon": 72,
...            "timeframe": "1h", "direction": "UP", "probability": 0.78, "threshold": 0.6,
...            "model": "lightgbm v3", "candle_time": "2024-05-01T12:00:00+00:00",
...            "price": 30123.45, "up_level": 30725.92, "down_level": 29521.98}
>>> print(format_signal_text(payload))
BTC/USDT: 78% chance of touching +2% before -2% within 72h
price 30,123.45 | +2% at 30,725.92 | -2% at 29,521.98 | lightgbm v3 | 1h candle 2024-05-01 12:00 UTC
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any

from signalcast.errors import ConfigError
from signalcast.timeframes import timeframe_to_timedelta

__all__ = ["format_alert", "format_generic", "format_signal_html", "format_signal_text"]

log = logging.getLogger(__name__)

_MAX_VALUE_CHARS = 300  # generic listing: keep one odd value from filling a 4096-char message


# -- pieces ------------------------------------------------------------------------------------


def _move(pct: float) -> str:
    """0.02 -> "2%", 0.015 -> "1.5%"."""
    return f"{pct * 100:.2f}".rstrip("0").rstrip(".") + "%"


def _whole_percent(probability: float) -> str:
    """0.78 -> "78%"; never "100%" or "0%" for a probability that is merely close."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must lie in [0, 1], got {probability!r}")
    if probability >= 0.995:
        return ">99%"
    if probability < 0.005:
        return "<1%"
    return f"{round(probability * 100)}%"


def _price(value: float | None) -> str:
    """About five significant digits, at least two decimals, thousands separated.

    >>> _price(30123.456), _price(0.51234), _price(0.5), _price(0.000012345)
    ('30,123.46', '0.51234', '0.50', '0.000012345')
    """
    if value is None or not math.isfinite(value):
        return "n/a"
    if value == 0:
        return "0.00"
    decimals = min(12, max(2, 4 - math.floor(math.log10(abs(value)))))
    text = f"{value:,.{decimals}f}"
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


def _duration(minutes: int) -> str:
    """Minutes -> "45m", "24h", "72h", "5d" (days only beyond three days)."""
    if minutes % 60:
        return f"{minutes}m"
    hours = minutes // 60
    if hours > 72 and hours % 24 == 0:
        return f"{hours // 24}d"
    return f"{hours}h"


def _horizon(horizon: int, timeframe: str) -> str:
    """How long the target has: "72h" for 72 x 1h; "24h (6 x 4h candles)" for 6 x 4h."""
    try:
        minutes = int(timeframe_to_timedelta(timeframe).total_seconds() // 60) * horizon
    except ConfigError:
        return f"{horizon} x {timeframe} candles"
    duration = _duration(minutes)
    if duration == f"{horizon}{timeframe[-1]}":  # the count already says it: "72h" for 1h
        return duration
    return f"{duration} ({horizon} x {timeframe} candles)"


def _candle_time(value: str) -> str:
    """ISO timestamp -> "2024-05-01 12:00 UTC"; an unparsable value is shown as given."""
    try:
        stamp = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return str(value)
    stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def _signal_parts(payload: Mapping[str, Any]) -> dict[str, str]:
    """The signal's phrases as plain (unescaped) text; raises KeyError/ValueError if malformed."""
    direction = str(payload["direction"]).upper()
    if direction not in ("UP", "DOWN"):
        raise ValueError(f"direction must be UP or DOWN, got {payload['direction']!r}")
    move = _move(float(payload["pct"]))
    up, down = f"+{move}", f"-{move}"
    first, second = (up, down) if direction == "UP" else (down, up)
    levels = [
        f"{up} at {_price(payload['up_level'])}",
        f"{down} at {_price(payload['down_level'])}",
    ]
    if direction == "DOWN":
        levels.reverse()
    notes = []
    if payload.get("fallback"):
        notes.append(f"Fallback: {payload['fallback']}")
    if payload.get("conflict"):
        notes.append("Models disagree on this asset: treat with care")
    return {
        "asset": str(payload["asset"]),
        "claim": (
            f"{_whole_percent(float(payload['probability']))} chance of touching {first} "
            f"before {second} within {_horizon(int(payload['horizon']), payload['timeframe'])}"
        ),
        "price": _price(payload["price"]),
        "levels": " | ".join(levels),
        "model": str(payload["model"]),
        "threshold": _whole_percent(float(payload["threshold"])),
        "target": str(payload["target"]),
        "candle": f"{payload['timeframe']} candle {_candle_time(payload['candle_time'])}",
        "notes": "; ".join(notes),
    }


# -- public formatters -------------------------------------------------------------------------


def format_signal_html(payload: Mapping[str, Any]) -> str:
    """A signal alert in Telegram HTML: a bold headline, then price, model and candle lines."""
    p = {key: escape(value) for key, value in _signal_parts(payload).items()}
    lines = [
        f"<b>{p['asset']}</b>: {p['claim']}",
        f"Price {p['price']} | {p['levels']}",
        f"Model {p['model']} | alert threshold {p['threshold']} | target {p['target']}",
        p["candle"],
    ]
    if p["notes"]:
        lines.append(f"<i>{p['notes']}</i>")
    return "\n".join(lines)


def format_signal_text(payload: Mapping[str, Any]) -> str:
    """A signal alert as two plain lines for the console: the claim, then the details."""
    p = _signal_parts(payload)
    details = [f"price {p['price']}", p["levels"], p["model"], p["candle"]]
    if p["notes"]:
        details.append(p["notes"])
    return f"{p['asset']}: {p['claim']}\n" + " | ".join(details)


def format_generic(kind: str, payload: Mapping[str, Any], html: bool) -> str:
    """Any payload as a ``key: value`` listing, so an alert of an unknown kind loses nothing."""
    lines = [f"<b>{escape(kind)}</b>" if html else f"[{kind}]"]
    for key, value in payload.items():
        shown = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(shown) > _MAX_VALUE_CHARS:
            shown = shown[: _MAX_VALUE_CHARS - 3] + "..."
        lines.append(f"{escape(str(key))}: {escape(shown)}" if html else f"{key}: {shown}")
    return "\n".join(lines)


_FORMATTERS: dict[str, tuple[Callable[[Mapping[str, Any]], str], ...]] = {
    # kind -> (html formatter, plain-text formatter)
    "signal": (format_signal_html, format_signal_text),
}


def format_alert(kind: str, payload: Mapping[str, Any], html: bool) -> str:
    """Render an outbox alert of ``kind`` as Telegram HTML (``html=True``) or plain text.

    A kind without a formatter, or a payload its formatter cannot read, is rendered as a
    generic listing (and logged) rather than raised: an alert stuck in the outbox helps nobody.
    """
    formatters = _FORMATTERS.get(kind)
    if formatters is None:
        return format_generic(kind, payload, html)
    try:
        return formatters[0](payload) if html else formatters[1](payload)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("Malformed %s alert payload (%r); sending it as a listing", kind, exc)
        return format_generic(kind, payload, html)
