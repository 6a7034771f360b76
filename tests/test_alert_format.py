"""What the new alert kinds say, in HTML Telegram accepts and in plain text, and the chart."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from signalcast.notifier.charts import signal_chart
from signalcast.notifier.format import CAPTION_LIMIT, fit_caption, format_alert
from tests.fakes.telegram_server import _html_to_plain  # Telegram's HTML rules

SIGNAL = {"asset": "BTC/USDT", "target": "2pct_72", "pct": 0.02, "horizon": 72,
          "timeframe": "1h", "direction": "UP", "probability": 0.78, "threshold": 0.6,
          "band": "high", "model": "lightgbm v3", "candle_time": "2024-05-01T12:00:00+00:00",
          "price": 30123.45, "up_level": 30725.92, "down_level": 29521.98, "fallback": None,
          "conflict": False}


def outcome(**changes: Any) -> dict[str, Any]:
    return {**SIGNAL, "result": "hit", "label": 1, "bars": 5,
            "resolved_at": "2024-05-01T17:00:00+00:00", **changes}


def test_a_signal_states_direction_confidence_band_model_and_levels():
    lines = format_alert("signal", SIGNAL, html=True).splitlines()
    assert lines[0] == "<b>BTC/USDT</b>: 78% chance of touching +2% before -2% within 72h"
    assert lines[1] == "Price 30,123.45 | +2% at 30,725.92 | -2% at 29,521.98"
    assert lines[2].startswith("UP, confidence high | Model lightgbm v3 | alert threshold 60%")
    assert "confidence high" in format_alert("signal", SIGNAL, html=False)


@pytest.mark.parametrize(("result", "label", "says"), [
    ("hit", 1, "+2% at 30,725.92 touched first, after 5 candle(s)"),
    ("miss", 0, "-2% at 29,521.98 touched first, after 5 candle(s)"),
    ("expired", -1, "neither +2% at 30,725.92 nor -2% at 29,521.98 within 72h"),
])
def test_an_outcome_says_whether_the_signal_hit_missed_or_expired(result, label, says):
    text = format_alert("outcome", outcome(result=result, label=label), html=False)
    headline, signal_line, what = text.splitlines()
    assert headline == f"{result.title()}: BTC/USDT 2pct_72"
    assert signal_line == ("UP signal at 78%, confidence high (lightgbm v3), 1h candle "
                           "2024-05-01 12:00 UTC")
    assert what == says


def test_a_model_event_names_both_versions_the_metric_change_and_who_did_it():
    payload = {"event": "promoted", "asset": "BTC/USDT", "target": "2pct_72",
               "from": "lightgbm v3", "to": "xgboost v1", "actor": "telegram:42",
               "reason": "better <AUC> & brier", "at": "2024-05-01T12:00:00+00:00",
               "stats": {"from": {"auc": 0.61, "brier": 0.24}, "to": {"auc": 0.64}}}
    html = format_alert("model", payload, html=True)
    assert html.splitlines() == [
        "<b>Model promoted: BTC/USDT 2pct_72</b>", "xgboost v1 replaces lightgbm v3",
        "AUC 0.610 -&gt; 0.640", "<i>by telegram:42: better &lt;AUC&gt; &amp; brier</i>"]
    _html_to_plain(html)  # Telegram would accept it


def test_every_kind_renders_html_telegram_accepts_even_with_hostile_names():
    hostile = "A<B&C>/USDT"
    payloads = {
        "signal": {**SIGNAL, "asset": hostile, "model": "m<1>"},
        "outcome": outcome(asset=hostile, model="<x>"),
        "summary": {"since": "2024-05-01T00:00:00+00:00", "until": "2024-05-08T00:00:00+00:00",
                    "days": 7, "rows": [{"asset": hostile, "target": "t&t", "resolved": 4,
                                         "hits": 3, "hit_rate": 0.75, "auc": 0.8,
                                         "expired": 1}]},
        "model": {"event": "rolled_back", "asset": hostile, "target": "x", "from": "<a>",
                  "to": "b&", "actor": "cli:<me>", "reason": "", "stats": {},
                  "at": "2024-05-01T12:00:00+00:00"},
        "system": {"check": "task_failures", "task": "<predict>", "failures": 3,
                   "minutes": 60, "last_error": "KeyError: '<x>'"},
    }
    for kind, payload in payloads.items():
        html = format_alert(kind, payload, html=True)
        assert "&lt;" in html and "<B" not in html, kind
        assert "<" in _html_to_plain(html), kind  # the visible text keeps the real name
        assert not format_alert(kind, payload, html=False).startswith(f"[{kind}]"), kind


def test_a_long_summary_is_cut_to_telegrams_message_limit_with_a_count():
    rows = [{"asset": f"COIN{i}/USDT", "target": "2pct_72", "resolved": 10, "hits": 6,
             "hit_rate": 0.6, "auc": 0.6, "expired": 2} for i in range(200)]
    html = format_alert("summary", {"until": "2024-05-08T00:00:00+00:00", "days": 7,
                                    "since": "2024-05-01T00:00:00+00:00", "rows": rows},
                        html=True)
    assert len(html) <= 4096
    assert "more" in html.splitlines()[-2] and html.splitlines()[-1].startswith("<i>All: ")


def test_a_caption_drops_whole_lines_to_fit_1024_characters():
    text = "<b>head</b>\n" + "\n".join(f"<i>line {i}</i> " + "x" * 80 for i in range(20))
    caption = fit_caption(text)
    assert len(caption) <= CAPTION_LIMIT and caption.startswith("<b>head</b>\n")
    _html_to_plain(caption)
    assert fit_caption("short") == "short"
    one_line = fit_caption("<b>" + "a&amp;" * 400 + "</b>")
    assert len(one_line) <= CAPTION_LIMIT and "<b>" not in one_line
    _html_to_plain(one_line)


@pytest.mark.slow
def test_a_chart_is_a_png_of_the_candles_with_both_levels():
    index = pd.date_range("2024-05-01", periods=72, freq="1h", tz="UTC")
    close = 100 + np.cumsum(np.random.default_rng(1).normal(size=72))
    candles = pd.DataFrame({"open": close - 0.2, "high": close + 1, "low": close - 1,
                            "close": close}, index=index)
    png = signal_chart(candles, up_level=close[-1] * 1.02, down_level=close[-1] * 0.98,
                       title="BTC/USDT 2pct_72: UP 78%")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and 5_000 < len(png) < 500_000
    with pytest.raises(ValueError, match="no candles"):
        signal_chart(candles.iloc[:0], up_level=1, down_level=1, title="x")
