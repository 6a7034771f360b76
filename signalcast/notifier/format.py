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
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any

from signalcast.core.errors import ConfigError
from signalcast.core.timeframes import timeframe_to_timedelta

__all__ = [
    "CAPTION_LIMIT",
    "MESSAGE_LIMIT",
    "fit_caption",
    "format_alert",
    "format_generic",
    "format_signal_html",
    "format_signal_text",
]

log = logging.getLogger(__name__)

_MAX_VALUE_CHARS = 300  # generic listing: keep one odd value from filling a 4096-char message
MESSAGE_LIMIT = 4096  # Telegram's limit for a message text
CAPTION_LIMIT = 1024  # ... and for a photo caption


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
        "direction": direction,
        "band": str(payload.get("band") or ""),
        "threshold": _whole_percent(float(payload["threshold"])),
        "target": str(payload["target"]),
        "candle": f"{payload['timeframe']} candle {_candle_time(payload['candle_time'])}",
        "notes": "; ".join(notes),
    }


# -- public formatters -------------------------------------------------------------------------


def format_signal_html(payload: Mapping[str, Any]) -> str:
    """A signal alert in Telegram HTML: a bold headline, then price, model and candle lines."""
    p = {key: escape(value) for key, value in _signal_parts(payload).items()}
    verdict = f"{p['direction']}, confidence {p['band']} | " if p["band"] else ""
    lines = [
        f"<b>{p['asset']}</b>: {p['claim']}",
        f"Price {p['price']} | {p['levels']}",
        f"{verdict}Model {p['model']} | alert threshold {p['threshold']} | target {p['target']}",
        p["candle"],
    ]
    if p["notes"]:
        lines.append(f"<i>{p['notes']}</i>")
    return "\n".join(lines)


def format_signal_text(payload: Mapping[str, Any]) -> str:
    """A signal alert as two plain lines for the console: the claim, then the details."""
    p = _signal_parts(payload)
    details = [f"price {p['price']}", p["levels"], p["model"], p["candle"]]
    if p["band"]:
        details.insert(2, f"confidence {p['band']}")
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


# -- other kinds: a headline, detail lines and an optional note --------------------------------


def _render(headline: str, lines: list[str], note: str, html: bool) -> str:
    """Bold headline, plain lines, italic note (HTML, every value escaped) or plain text;
    lines that would pass Telegram's message limit are replaced by a count."""
    def wrap(text: str, tag: str) -> str:
        return f"<{tag}>{escape(text)}</{tag}>" if html else text

    out = [wrap(headline, "b")]
    used = len(out[0]) + len(note) + 60
    for i, line in enumerate(lines):
        shown = escape(line) if html else line
        if used + len(shown) + 1 > MESSAGE_LIMIT:
            out.append(f"... {len(lines) - i} more")
            break
        out.append(shown)
        used += len(shown) + 1
    if note:
        out.append(wrap(note, "i"))
    return "\n".join(out)


_RESULT_WORDS = {"hit": "Hit", "miss": "Miss", "expired": "Expired"}


def _outcome(payload: Mapping[str, Any], html: bool) -> str:
    result = str(payload["result"])
    move = _move(float(payload["pct"]))
    up = f"+{move} at {_price(payload['up_level'])}"
    down = f"-{move} at {_price(payload['down_level'])}"
    direction = str(payload["direction"]).upper()
    if result == "expired":
        what = (f"neither {up} nor {down} within "
                f"{_horizon(int(payload['horizon']), payload['timeframe'])}")
    else:
        touched = up if int(payload["label"]) == 1 else down
        what = f"{touched} touched first, after {int(payload['bars'])} candle(s)"
    band = f", confidence {payload['band']}" if payload.get("band") else ""
    return _render(
        f"{_RESULT_WORDS[result]}: {payload['asset']} {payload['target']}",
        [f"{direction} signal at {_whole_percent(float(payload['probability']))}{band} "
         f"({payload['model']}), {payload['timeframe']} candle "
         f"{_candle_time(payload['candle_time'])}", what], "", html)


def _summary(payload: Mapping[str, Any], html: bool) -> str:
    """Each figure beside its benchmark: hit rate beside "always the majority direction", live
    AUC beside its label-shift null; a target whose alerts the skill gate holds says why."""
    lines, resolved, hits, majority = [], 0, 0, 0.0
    for row in payload["rows"]:
        name = f"{row['asset']} {row['target']}"
        held = f"; alerts held: {row['alerts_held']}" if row.get("alerts_held") else ""
        if not row["resolved"]:
            lines.append(f"{name}: nothing resolved ({row['expired']} expired){held}")
            continue
        auc = "n/a" if row["auc"] is None else f"{row['auc']:.2f}"
        if row.get("auc_null"):
            auc += f" (null {row['auc_null'][0]:.2f}±{row['auc_null'][1]:.2f})"
        bench = ("" if row.get("majority") is None
                 else f"; always-majority {row['majority']:.0%}")
        lines.append(f"{name}: hit rate {row['hit_rate']:.0%} ({row['hits']}/{row['resolved']}"
                     f"{bench}), live AUC {auc}, {row['expired']} expired{held}")
        resolved, hits = resolved + row["resolved"], hits + row["hits"]
        majority += (row.get("majority") or 0.0) * row["resolved"]
    total = ""
    if resolved:
        total = (f"All: hit rate {hits / resolved:.0%} ({hits}/{resolved}; always-majority "
                 f"{majority / resolved:.0%})")
    chart = payload.get("reliability")
    if chart:
        total += ("; " if total else "") + f"chart: reliability of {chart['n']} served"
    return _render(f"Daily summary: last {payload['days']} day(s) to "
                   f"{_candle_time(payload['until'])}", lines, total, html)


_EVENT_WORDS = {"retrained": "New champion trained", "promoted": "Model promoted",
                "rolled_back": "Model rolled back", "fallback": "Model fallback",
                "drift": "Model drift"}


def _stat_changes(stats: Mapping[str, Any]) -> str:
    """``{"from": {"auc": .61}, "to": {"auc": .64}}`` -> "AUC 0.610 -> 0.640"."""
    before, after = stats.get("from") or {}, stats.get("to") or {}
    parts = []
    for key in ("auc", "brier"):
        new = after.get(key)
        if isinstance(new, int | float):
            old = before.get(key)
            old_text = f"{old:.3f} -> " if isinstance(old, int | float) else ""
            parts.append(f"{key.upper() if key == 'auc' else key.title()} {old_text}{new:.3f}")
    return " | ".join(parts)


def _model(payload: Mapping[str, Any], html: bool) -> str:
    event = str(payload["event"])
    lines = []
    if payload.get("to") and payload.get("from"):
        lines.append(f"{payload['to']} replaces {payload['from']}")
    elif payload.get("to"):
        lines.append(f"now serving {payload['to']}")
    elif payload.get("from"):
        lines.append(f"{payload['from']}")
    changes = _stat_changes(payload.get("stats") or {})
    if changes:
        lines.append(changes)
    who = f"by {payload['actor']}" if payload.get("actor") else ""
    why = str(payload.get("reason") or "")
    note = ": ".join(part for part in (who, why) if part)
    return _render(f"{_EVENT_WORDS.get(event, event)}: {payload['asset']} {payload['target']}",
                   lines, note, html)


def _system(payload: Mapping[str, Any], html: bool) -> str:
    check = str(payload["check"])
    if check == "worker_silent":
        headline = f"System: worker {payload['worker']} is silent"
        lines = [f"last answered a ping at {_candle_time(payload['last_seen'])}"]
    elif check == "scheduler_silent":
        headline = "System: the scheduler is silent"
        lines = [f"last candle tick enqueued at {_candle_time(payload['last_tick'])}"]
    elif check == "task_failures":
        headline = (f"System: task {payload['task']} failed {payload['failures']} times "
                    f"in {payload['minutes']} min")
        lines = [f"last error: {payload['last_error']}"] if payload.get("last_error") else []
    elif check == "delivery_uncertain":
        a = payload["alert"]
        headline = f"System: a {a['kind']} alert to chat {a['chat']} may have been delivered"
        lines = [f"{a['asset']} {a['target']}, candle {_candle_time(a['candle_time'])}",
                 f"Telegram did not answer ({payload['reason']}); it is not sent again, "
                 "so it arrived once or not at all"]
    elif check == "signals_expired":
        headline = f"System: {payload['count']} signal(s) expired unsent"
        lines = [f"{a['asset']} {a['target']} candle {_candle_time(a['candle_time'])} to "
                 f"chat {a['chat']}: {_duration(int(a['age_seconds']) // 60)} old"
                 for a in payload["alerts"]]
        if payload["count"] > len(payload["alerts"]):
            lines.append(f"... and {payload['count'] - len(payload['alerts'])} more")
        lines.append("older than alerts.max_signal_age_seconds: their prices are stale")
    else:
        raise ValueError(f"unknown system check {check!r}")
    return _render(headline, lines, "", html)


def _both(render: Callable[[Mapping[str, Any], bool], str]) -> tuple[Callable, Callable]:
    return (lambda payload: render(payload, True)), (lambda payload: render(payload, False))


_FORMATTERS: dict[str, tuple[Callable[[Mapping[str, Any]], str], ...]] = {
    # kind -> (html formatter, plain-text formatter)
    "signal": (format_signal_html, format_signal_text),
    "outcome": _both(_outcome),
    "summary": _both(_summary),
    "model": _both(_model),
    "system": _both(_system),
}


def fit_caption(text: str, limit: int = CAPTION_LIMIT) -> str:
    """``text`` shortened to ``limit`` characters for a photo caption by dropping whole lines
    from the end (each line closes its own tags, so the HTML stays valid)."""
    lines = text.split("\n")
    while len(lines) > 1 and len("\n".join(lines)) > limit:
        lines.pop()
    if len(lines[0]) <= limit:
        return "\n".join(lines)
    # one overlong line: drop its tags, cut it, and never leave half an entity like "&am"
    return re.sub(r"&[#\w]*$", "", re.sub(r"<[^>]*>", "", lines[0])[: limit - 3]) + "..."


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
