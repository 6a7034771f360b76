"""Hand-computed cases for the first-touch labels, and training/live agreement."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from signalcast.features import (
    DOWN,
    EXPIRED,
    PENDING,
    UP,
    first_touch_labels,
    resolve_first_touch,
)

PCT = 0.25  # levels 125 / 75 from a close of 100: exact in binary, so ties are exact


def frame(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    """Candles from (open, high, low, close) tuples, hourly UTC open times."""
    index = pd.date_range("2024-01-01", periods=len(rows), freq="1h", tz="UTC", name="time")
    df = pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index, dtype=float)
    df["volume"] = 1.0
    return df


ENTRY = (100, 100, 100, 100)  # entry candle: close 100 -> up level 125, down level 75
QUIET = (100, 110, 90, 100)  # touches neither level


def first(rows, horizon: int = 3, pct: float = PCT) -> tuple[int, int]:
    row = first_touch_labels(frame(rows), pct, horizon).iloc[0]
    return int(row["label"]), int(row["bars"])


def test_clean_up_and_down():
    assert first([ENTRY, QUIET, (100, 126, 95, 120), QUIET]) == (UP, 2)
    assert first([ENTRY, (100, 105, 74, 80), QUIET, QUIET]) == (DOWN, 1)


def test_touching_the_level_exactly_counts():
    assert first([ENTRY, QUIET, QUIET, (100, 125, 99, 110)]) == (UP, 3)
    assert first([ENTRY, QUIET, QUIET, (100, 101, 75, 80)]) == (DOWN, 3)


def test_first_touch_wins():
    assert first([ENTRY, QUIET, (100, 130, 99, 120), (120, 121, 50, 60)]) == (UP, 2)
    assert first([ENTRY, (100, 101, 70, 80), (80, 130, 79, 129), QUIET]) == (DOWN, 1)


def test_candle_touching_both_levels_uses_the_level_nearer_its_open():
    assert first([ENTRY, (120, 130, 70, 100), QUIET, QUIET]) == (UP, 1)  # 5 vs 45 away
    assert first([ENTRY, (80, 130, 70, 100), QUIET, QUIET]) == (DOWN, 1)  # 45 vs 5 away
    assert first([ENTRY, (100, 130, 70, 100), QUIET, QUIET]) == (DOWN, 1)  # equidistant


def test_gap_through_a_level():
    assert first([ENTRY, QUIET, (130, 135, 120, 125), QUIET]) == (UP, 2)
    assert first([ENTRY, (70, 72, 60, 65), QUIET, QUIET]) == (DOWN, 1)
    # gap beyond one level, then the same candle reaches the other: the gap decides
    assert first([ENTRY, (130, 131, 74, 90), QUIET, QUIET]) == (UP, 1)
    assert first([ENTRY, (70, 126, 69, 100), QUIET, QUIET]) == (DOWN, 1)


def test_no_touch_within_horizon_expires():
    rows = [ENTRY, QUIET, QUIET, QUIET, (100, 200, 99, 150)]  # touch only at bar 4 > H = 3
    assert first(rows, horizon=3) == (EXPIRED, 0)
    assert first(rows, horizon=4) == (UP, 4)


def test_last_horizon_rows_are_pending_unless_already_touched():
    rows = [ENTRY, QUIET, QUIET, QUIET, QUIET, (100, 130, 99, 100), QUIET]
    labels = first_touch_labels(frame(rows), PCT, 3)
    # row 2: candles 3, 4, 5 -> touch at 5 (bar 3); row 3: bars 4, 5 -> touched at bar 2;
    # row 4: bars 5, 6 -> touched at bar 1; row 5 (close 100): only bar 6, quiet -> pending
    assert labels["label"].tolist() == [EXPIRED, EXPIRED, UP, UP, UP, PENDING, PENDING]
    assert labels["bars"].tolist() == [0, 0, 3, 2, 1, 0, 0]


def test_docstring_example_and_small_pct():
    df = frame([(100, 100, 100, 100), (100, 101, 99.5, 100.5), (101, 103, 100, 102)])
    assert first_touch_labels(df, 0.02, 2)["label"].tolist() == [UP, UP, PENDING]


def test_empty_frame():
    out = first_touch_labels(frame([]), PCT, 3)
    assert out.empty and list(out.columns) == ["label", "bars"]


def random_candles(n: int = 400, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0.0, 0.003, n))  # gaps
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, 0.006, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, 0.006, n)))
    rows = list(zip(open_, high, low, close, strict=True))
    return frame(rows)


@pytest.mark.slow
def test_live_resolution_agrees_with_training_labels_on_every_row():
    candles, pct, horizon = random_candles(), 0.02, 8
    labels = first_touch_labels(candles, pct, horizon)
    assert {UP, DOWN, EXPIRED, PENDING} <= set(labels["label"].tolist())
    for t, entry in enumerate(candles.index):
        want = (int(labels["label"].iloc[t]), int(labels["bars"].iloc[t]))
        full = resolve_first_touch(candles, entry, pct, horizon)
        sliced = resolve_first_touch(candles.iloc[t : t + horizon + 1], entry, pct, horizon)
        assert (full.label, full.bars) == want == (sliced.label, sliced.bars), t


@pytest.mark.slow
def test_live_resolution_as_candles_arrive():
    """With only k later candles known, live resolution is pending or already the final label."""
    candles, pct, horizon = random_candles(seed=2), 0.02, 8
    labels = first_touch_labels(candles, pct, horizon)
    for t in range(0, len(candles) - horizon, 7):
        final = (int(labels["label"].iloc[t]), int(labels["bars"].iloc[t]))
        for k in range(horizon + 1):
            res = resolve_first_touch(candles.iloc[: t + 1 + k], candles.index[t], pct, horizon)
            touched_by_now = final[0] in (UP, DOWN) and final[1] <= k
            if touched_by_now or k == horizon:
                assert (res.label, res.bars) == final
            else:
                assert (res.label, res.bars) == (PENDING, 0)


def test_resolution_name_and_missing_entry():
    candles = frame([ENTRY, (100, 126, 95, 120)])
    res = resolve_first_touch(candles, candles.index[0], PCT, 3)
    assert (res.label, res.bars, res.name) == (UP, 1, "up")
    with pytest.raises(KeyError):
        resolve_first_touch(candles, candles.index[0] - pd.Timedelta(hours=1), PCT, 3)
    with pytest.raises(KeyError):
        resolve_first_touch(candles, candles.index[0] + pd.Timedelta(minutes=30), PCT, 3)


INVALID = [(0.0, 3), (-0.01, 3), (0.02, 0), (0.02, -1)]


@pytest.mark.parametrize("pct, horizon", INVALID)
def test_invalid_pct_or_horizon_raise(pct, horizon):
    with pytest.raises(ValueError):
        first_touch_labels(frame([ENTRY, QUIET]), pct, horizon)


@pytest.mark.parametrize("pct, horizon", [*INVALID[:3], (0.02, -1)])
def test_invalid_pct_or_horizon_raise_live(pct, horizon):
    candles = frame([ENTRY, QUIET])
    with pytest.raises(ValueError):
        resolve_first_touch(candles, candles.index[0], pct, horizon)


@pytest.mark.parametrize("pct", [float("nan"), float("inf")])
def test_non_finite_pct_is_rejected(pct):
    with pytest.raises(ValueError):
        first_touch_labels(frame([ENTRY, QUIET]), pct, 3)


def test_live_resolution_accepts_a_naive_entry_time_as_utc():
    candles = frame([ENTRY, QUIET])
    naive = candles.index[0].tz_localize(None)
    assert resolve_first_touch(candles, naive, 0.02, 1) == resolve_first_touch(
        candles, candles.index[0], 0.02, 1
    )
