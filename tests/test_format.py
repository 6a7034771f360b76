"""Alert text: what a signal says, in Telegram HTML and in plain text."""

from __future__ import annotations

from typing import Any

import pytest

from signalcast.notifier.format import (
    format_alert,
    format_generic,
    format_signal_html,
    format_signal_text,
)


def signal(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "asset": "BTC/USDT",
        "target": "2pct_72",
        "pct": 0.02,
        "horizon": 72,
        "timeframe": "1h",
        "direction": "UP",
        "probability": 0.78,
        "threshold": 0.6,
        "model": "lightgbm v3",
        "candle_time": "2024-05-01T12:00:00+00:00",
        "price": 30123.456,
        "up_level": 30725.9265,
        "down_level": 29520.987,
        "fallback": None,
        "conflict": False,
    }
    payload.update(changes)
    return payload


def test_html_headline_states_probability_move_and_horizon() -> None:
    first_line = format_signal_html(signal()).splitlines()[0]
    assert first_line == ("<b>BTC/USDT</b>: 78% chance of touching +2% before -2% within 72h")


def test_html_details_show_price_levels_model_and_candle_time() -> None:
    lines = format_signal_html(signal()).splitlines()
    assert lines[1] == "Price 30,123.46 | +2% at 30,725.93 | -2% at 29,520.99"
    assert "lightgbm v3" in lines[2] and "threshold 60%" in lines[2] and "2pct_72" in lines[2]
    assert lines[3] == "1h candle 2024-05-01 12:00 UTC"
    assert len(lines) == 4  # no fallback, no conflict: no note line


def test_down_signal_names_the_down_move_first() -> None:
    html_text = format_signal_html(signal(direction="DOWN", probability=0.64))
    assert "64% chance of touching -2% before +2%" in html_text
    assert "| -2% at 29,520.99 | +2% at 30,725.93" in html_text
    assert "touching -2% before +2%" in format_signal_text(signal(direction="down"))


def test_every_dynamic_value_is_html_escaped() -> None:
    html_text = format_signal_html(
        signal(asset="A<B&C>/USDT", model="m<1> & co", target="t&t", fallback="champion <down>")
    )
    assert "<b>A&lt;B&amp;C&gt;/USDT</b>" in html_text
    assert "m&lt;1&gt; &amp; co" in html_text
    assert "t&amp;t" in html_text
    assert "champion &lt;down&gt;" in html_text
    assert "<B" not in html_text and "<1>" not in html_text and "<down>" not in html_text


def test_plain_text_is_not_escaped_and_fits_two_lines() -> None:
    text = format_signal_text(signal(asset="A<B&C>/USDT"))
    assert text.startswith("A<B&C>/USDT: 78% chance of touching +2% before -2% within 72h\n")
    assert len(text.splitlines()) == 2
    assert "<b>" not in text


@pytest.mark.parametrize(
    ("timeframe", "horizon", "expected"),
    [
        ("1h", 72, "within 72h"),
        ("4h", 6, "within 24h (6 x 4h candles)"),
        ("15m", 6, "within 90m (6 x 15m candles)"),
        ("15m", 8, "within 2h (8 x 15m candles)"),
        ("1d", 5, "within 5d"),
        ("1d", 3, "within 72h (3 x 1d candles)"),
    ],
)
def test_horizon_is_a_duration_with_the_candle_count_when_it_differs(
    timeframe: str, horizon: int, expected: str
) -> None:
    payload = signal(timeframe=timeframe, horizon=horizon)
    assert format_signal_html(payload).splitlines()[0].endswith(expected)
    assert format_signal_text(payload).splitlines()[0].endswith(expected)


def test_unknown_timeframe_still_renders_the_horizon_in_candles() -> None:
    assert "within 12 x 1w candles" in format_signal_text(signal(timeframe="1w", horizon=12))


@pytest.mark.parametrize(
    ("price", "up", "down", "expected"),
    [
        (30000.0, 30600.0, 29400.0, "Price 30,000.00 | +2% at 30,600.00 | -2% at 29,400.00"),
        (0.5, 0.51, 0.49, "Price 0.50 | +2% at 0.51 | -2% at 0.49"),
        (0.51234, 0.522587, 0.502093, "Price 0.51234 | +2% at 0.52259 | -2% at 0.50209"),
        (0.00001234, 0.0000125868, 0.0000120932, "Price 0.00001234 | +2% at 0.000012587"),
    ],
)
def test_prices_keep_sensible_precision_for_any_magnitude(
    price: float, up: float, down: float, expected: str
) -> None:
    line = format_signal_html(signal(price=price, up_level=up, down_level=down)).splitlines()[1]
    assert line.startswith(expected)


@pytest.mark.parametrize(
    ("probability", "shown"), [(0.78, "78%"), (0.555, "56%"), (0.999, ">99%"), (0.001, "<1%")]
)
def test_probability_is_a_whole_percent_never_a_false_certainty(
    probability: float, shown: str
) -> None:
    assert f": {shown} chance" in format_signal_text(signal(probability=probability))


def test_fractional_moves_keep_their_decimals() -> None:
    assert "touching +1.5% before -1.5%" in format_signal_text(signal(pct=0.015))


def test_fallback_and_conflict_are_flagged() -> None:
    html_text = format_signal_html(signal(fallback="champion unavailable", conflict=True))
    assert html_text.splitlines()[-1] == (
        "<i>Fallback: champion unavailable; Models disagree on this asset: treat with care</i>"
    )
    assert format_signal_text(signal(fallback="x y")).endswith(" | Fallback: x y")
    assert "Models disagree" in format_signal_text(signal(conflict=True))


def test_naive_and_zulu_candle_times_are_read_as_utc() -> None:
    for stamp in ("2024-05-01T12:00:00", "2024-05-01T12:00:00Z", "2024-05-01T14:00:00+02:00"):
        assert "1h candle 2024-05-01 12:00 UTC" in format_signal_text(signal(candle_time=stamp))


def test_format_alert_dispatches_on_kind() -> None:
    assert format_alert("signal", signal(), html=True) == format_signal_html(signal())
    assert format_alert("signal", signal(), html=False) == format_signal_text(signal())


def test_unknown_kind_renders_every_key_escaped() -> None:
    payload = {"model": "xgb <v4>", "metrics": {"brier": 0.2}, "promoted": True}
    assert format_alert("promotion", payload, html=True) == (
        "<b>promotion</b>\nmodel: xgb &lt;v4&gt;\nmetrics: {&quot;brier&quot;: 0.2}\npromoted: true"
    )
    assert format_alert("promotion", payload, html=False) == (
        '[promotion]\nmodel: xgb <v4>\nmetrics: {"brier": 0.2}\npromoted: true'
    )


def test_malformed_signal_payload_falls_back_to_a_listing(caplog: pytest.LogCaptureFixture) -> None:
    broken = {"asset": "BTC/USDT", "direction": "SIDEWAYS"}
    assert format_alert("signal", broken, html=True) == format_generic("signal", broken, True)
    assert "Malformed signal alert payload" in caplog.text


def test_huge_values_are_shortened_in_a_listing() -> None:
    text = format_generic("report", {"blob": "x" * 5000}, html=False)
    assert len(text) < 400 and text.endswith("...")
