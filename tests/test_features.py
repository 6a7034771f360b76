"""Tests for signalcast.features.engineering: causality, finite lookback, values, robustness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from signalcast.core.errors import ConfigError, DataError
from signalcast.features import (
    FEATURE_SET,
    MAX_LOOKBACK,
    compute_features,
    feature_names,
    latest_features,
)
from signalcast.features.engineering import warm_rows

N = 600


def make_candles(n: int = N, seed: int = 0, start: str = "2024-01-01", freq: str = "1h"):
    """Seeded random-walk candles in the project's candle-frame contract."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, 0.004, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, 0.004, n)))
    volume = rng.lognormal(10.0, 0.5, n)
    index = pd.date_range(start, periods=n, freq=freq, tz="UTC", name="time")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


def frame_from_close(close, volume=None, start: str = "2024-01-01") -> pd.DataFrame:
    """Candles with open = previous close and high/low = max/min(open, close)."""
    close = np.asarray(close, dtype=float)
    open_ = np.concatenate([[close[0]], close[:-1]])
    index = pd.date_range(start, periods=len(close), freq="1h", tz="UTC", name="time")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close),
            "low": np.minimum(open_, close),
            "close": close,
            "volume": np.ones(len(close)) if volume is None else np.asarray(volume, float),
        },
        index=index,
    )


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return make_candles()


@pytest.fixture(scope="module")
def features(candles) -> pd.DataFrame:
    return compute_features(candles)


# --- shape and contract -------------------------------------------------------------------------


def test_names_are_stable_unique_and_match_columns(features):
    names = feature_names()
    assert FEATURE_SET == "v2"
    assert names == feature_names()  # stable order
    assert len(names) == len(set(names))
    assert 40 <= len(names) <= 70
    assert list(features.columns) == names
    assert all(features.dtypes == np.float64)


def test_same_index_as_input(candles, features):
    assert features.index.equals(candles.index)


def test_input_frame_is_not_mutated():
    candles = make_candles(300)
    before = candles.copy(deep=True)
    compute_features(candles)
    latest_features(candles)
    pd.testing.assert_frame_equal(candles, before)


# --- causality and finite lookback -------------------------------------------------------------


@pytest.mark.parametrize("cut", [10, MAX_LOOKBACK - 1, MAX_LOOKBACK, 300, N - 2])
def test_future_shift_does_not_change_past_features(candles, features, cut):
    """Features up to and including ``cut`` ignore every candle after it."""
    rng = np.random.default_rng(cut)
    perturbed = candles.copy()
    later = perturbed.index > perturbed.index[cut]
    noise = np.exp(rng.normal(0.0, 0.05, (int(later.sum()), 5)))
    perturbed.loc[later, ["open", "high", "low", "close", "volume"]] *= noise
    changed = compute_features(perturbed)

    np.testing.assert_array_equal(
        changed.iloc[: cut + 1].to_numpy(), features.iloc[: cut + 1].to_numpy()
    )
    # the perturbation is real: the next row does move
    assert not np.allclose(
        changed.iloc[cut + 1].to_numpy(), features.iloc[cut + 1].to_numpy(), equal_nan=True
    )


@pytest.mark.parametrize("end", [MAX_LOOKBACK, MAX_LOOKBACK + 1, 250, 433, N - 1])
def test_trailing_window_equals_full_history(candles, features, end):
    tail = candles.iloc[end - MAX_LOOKBACK : end + 1]
    assert len(tail) == MAX_LOOKBACK + 1
    expected = features.iloc[end].to_numpy()
    assert np.isfinite(expected).all()
    np.testing.assert_allclose(compute_features(tail).iloc[-1], expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        latest_features(candles.iloc[: end + 1]), expected, rtol=1e-9, atol=1e-9
    )


def test_latest_features_is_last_row_and_uses_only_the_tail(candles, features):
    latest = latest_features(candles)
    assert latest.shape == (len(feature_names()),) and latest.dtype == np.float64
    np.testing.assert_allclose(latest, features.iloc[-1].to_numpy(), rtol=1e-9, atol=1e-9)

    corrupted = candles.copy()
    old = corrupted.index[: len(corrupted) - (MAX_LOOKBACK + 1)]
    corrupted.loc[old, ["open", "high", "low", "close", "volume"]] = np.nan
    np.testing.assert_array_equal(latest_features(corrupted), latest)


def test_nan_only_in_warm_up_rows_and_never_inf(candles, features):
    values = features.to_numpy()
    assert not np.isinf(values).any()
    assert np.isfinite(values[MAX_LOOKBACK:]).all()
    assert np.isnan(values[MAX_LOOKBACK - 1]).any()  # MAX_LOOKBACK is tight, not padded
    warm = warm_rows(features)
    assert warm.index.equals(features.index)
    assert warm.to_numpy().sum() == N - MAX_LOOKBACK
    assert np.isfinite(features[warm].to_numpy()).all()


def test_time_resolution_of_index_does_not_matter(candles, features):
    coarse = candles.copy()
    coarse.index = coarse.index.as_unit("s")
    pd.testing.assert_frame_equal(compute_features(coarse), features, check_index_type=False)


# --- hand-computed values ----------------------------------------------------------------------


def test_returns_and_sma_distance_by_hand(candles, features):
    c = candles["close"].to_numpy()
    t = 400
    row = features.iloc[t]
    assert row["ret1_lag0"] == pytest.approx(np.log(c[t] / c[t - 1]), abs=1e-15)
    assert row["ret1_lag3"] == pytest.approx(np.log(c[t - 3] / c[t - 4]), abs=1e-15)
    assert row["ret_24"] == pytest.approx(np.log(c[t] / c[t - 24]), abs=1e-14)
    assert row["sma_dist_6"] == pytest.approx(c[t] / c[t - 5 : t + 1].mean() - 1, abs=1e-14)
    lr = np.diff(np.log(c[t - 24 : t + 1]))
    assert row["rv_24"] == pytest.approx(lr.std(ddof=1), rel=1e-12)


def test_rsi_of_monotone_series():
    up = compute_features(frame_from_close(100 * 1.001 ** np.arange(400)))
    down = compute_features(frame_from_close(100 * 0.999 ** np.arange(400)))
    rsi = [name for name in feature_names() if name.startswith("rsi_")]
    assert len(rsi) >= 2
    np.testing.assert_array_equal(up[rsi].iloc[MAX_LOOKBACK:].to_numpy(), 100.0)
    np.testing.assert_array_equal(down[rsi].iloc[MAX_LOOKBACK:].to_numpy(), 0.0)


def test_bollinger_on_constant_then_step():
    step_at = 300
    close = np.where(np.arange(400) < step_at, 100.0, 110.0)
    feats = compute_features(frame_from_close(close))
    pos = feats["bb_pos_24"]
    # flat window: zero width -> NaN (not inf, not noise)
    assert np.isnan(pos.iloc[step_at - 1]) and feats["bb_width_24"].iloc[step_at - 1] == 0.0
    # just after the step the close is above the upper band: k of 24 closes are 110,
    # position = 0.5 + sqrt((24 - k) / k) / 4, falling back towards the band as k grows
    for k in (1, 2, 12, 23):
        assert pos.iloc[step_at + k - 1] == pytest.approx(0.5 + np.sqrt((24 - k) / k) / 4)
    assert pos.iloc[step_at] > 1.0
    assert np.isnan(pos.iloc[step_at + 23])  # flat again


def test_volume_ratio_parkinson_and_candle_shape():
    n = 300
    close = np.full(n, 100.0)
    candles = frame_from_close(close, volume=np.full(n, 5.0))
    candles["open"], candles["high"], candles["low"] = 99.0, 101.0, 100.0 / 1.01
    feats = compute_features(candles).iloc[-1]
    assert feats["vlm_ratio_24"] == 1.0 and feats["vlm_trend_24_168"] == 1.0
    expected = np.log(101.0 / (100.0 / 1.01)) / np.sqrt(4 * np.log(2))
    assert feats["parkinson_24"] == pytest.approx(expected, rel=1e-12)
    span = 101.0 - 100.0 / 1.01
    assert feats["body"] == pytest.approx(1.0 / span)
    assert feats["upper_wick"] == pytest.approx(1.0 / span)
    assert feats["lower_wick"] == pytest.approx((99.0 - 100.0 / 1.01) / span)
    assert feats["body"] + feats["upper_wick"] + feats["lower_wick"] == pytest.approx(1.0)


def test_hour_and_day_of_week_from_open_time():
    # 2024-01-01 was a Monday
    feats = compute_features(make_candles(200, start="2024-01-01 00:00"))
    monday_midnight, six_am = feats.iloc[0], feats.iloc[6]
    assert monday_midnight["hour_sin"] == pytest.approx(0.0, abs=1e-12)
    assert monday_midnight["hour_cos"] == pytest.approx(1.0)
    assert monday_midnight["dow_sin"] == pytest.approx(0.0, abs=1e-12)
    assert monday_midnight["dow_cos"] == pytest.approx(1.0)
    assert six_am["hour_sin"] == pytest.approx(1.0)
    wednesday = feats.iloc[48]
    assert wednesday["dow_sin"] == pytest.approx(np.sin(2 * np.pi * 2 / 7))
    quarter_hours = compute_features(make_candles(8, freq="15min"))
    assert quarter_hours["hour_sin"].iloc[1] == pytest.approx(np.sin(2 * np.pi * 0.25 / 24))


# --- robustness --------------------------------------------------------------------------------


def test_degenerate_candles_give_nan_not_inf():
    n = 300
    candles = frame_from_close(np.full(n, 50.0), volume=np.zeros(n))  # flat, no volume
    candles.iloc[100, candles.columns.get_loc("close")] = 0.0  # a broken price
    feats = compute_features(candles)
    assert not np.isinf(feats.to_numpy()).any()
    last = feats.iloc[-1]
    for name in ("rsi_14", "bb_pos_24", "body", "vlm_ratio_24", "range_pos_24", "rv_ratio_6_24"):
        assert np.isnan(last[name]), name
    assert last["ret_6"] == 0.0 and last["sma_dist_24"] == 0.0


def test_short_and_empty_input():
    short = make_candles(30)
    row = latest_features(short)
    names = feature_names()
    assert np.isnan(row[names.index("ret_168")]) and np.isfinite(row[names.index("ret_6")])
    np.testing.assert_array_equal(row, compute_features(short).iloc[-1].to_numpy())

    empty = make_candles(5).iloc[:0]
    out = compute_features(empty)
    assert out.shape == (0, len(names)) and list(out.columns) == names
    with pytest.raises(DataError):
        latest_features(empty)


def test_invalid_input_is_rejected(candles):
    with pytest.raises(DataError):
        compute_features(candles.drop(columns="volume"))
    with pytest.raises(DataError):
        compute_features(candles.reset_index(drop=True))
    with pytest.raises(DataError):
        compute_features(candles.iloc[::-1])
    with pytest.raises(ConfigError):
        compute_features(candles, timeframe="hourly")
