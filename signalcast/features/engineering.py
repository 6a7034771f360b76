"""Causal, scale-free candle features (feature set ``v2``).

Features are computed once per (asset, candle) and shared by every target and model, so training
and serving run the *same* code on the same numbers.

Causality. Row ``t`` of :func:`compute_features` is computed only from candles ``t - MAX_LOOKBACK
.. t``. Candle ``t`` itself is closed when a prediction is made at its close, so using its
open/high/low/close/volume is legitimate; the hour/day features come from its *open time*, which
is known in advance. Callers must therefore pass closed candles only, never the forming one.

Finite lookback (the hard rule). Every feature is a fixed-length trailing window: no ``ewm``
(infinite memory), no expanding or whole-series statistics, no centred windows, no fitted scalers.
Hence the last row computed from the last ``MAX_LOOKBACK + 1`` candles equals the last row computed
from the full history, which is what makes :func:`latest_features` both fast and exact. Rolling
statistics are evaluated window by window (strided window views), not with running sums, so
they carry no floating-point drift from earlier history either.

Scale-free. Only returns, ratios and bounded oscillators: no raw prices or volumes, so a model
trained on one asset can be applied to another.

Windows are counted in candles (6/12/24/48/168 = 6 h .. 1 week on hourly candles), so the same
feature set serves every timeframe.

Warm-up. Row ``i`` has ``i`` previous candles; rows with ``i < MAX_LOOKBACK`` may hold NaN (see
:func:`warm_rows`). From row ``MAX_LOOKBACK`` on, clean data gives finite values everywhere.
Degenerate inputs (``high == low``, flat prices, zero volume, non-positive prices) give NaN,
never ``inf``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from signalcast.core.errors import DataError
from signalcast.core.timeframes import timeframe_to_timedelta

FEATURE_SET = "v2"  # v2 added hl_lag0..5 and parkinson_12 / _48 (per-candle range)

WINDOWS = (6, 12, 24, 48, 168)  # the window family, in candles
RSI_WINDOWS = (6, 14, 24, 48, 168)
SLOPE_WINDOWS = (6, 12, 24, 48)  # SMA slope over w // 2 candles: lookback 1.5 * w - 1 <= 71
RV_RATIOS = ((6, 24), (12, 48), (24, 168))  # short / long realised volatility
BB_WINDOWS = (24, 48, 168)
VOLUME_WINDOWS = (6, 24, 168)
VOLUME_TRENDS = ((6, 48), (24, 168))  # short / long mean volume
RANGE_WINDOWS = (12, 24, 48, 168)
PARKINSON_WINDOWS = (12, 24, 48, 168)
ATR_SHORT, ATR_LONG = 14, 168
N_LAGS = 6
# every window some series takes a mean over (close, gains, losses, volume, true range, range^2)
_MEAN_WINDOWS = tuple(sorted({*WINDOWS, *RSI_WINDOWS, *VOLUME_WINDOWS,
                              *(w for pair in VOLUME_TRENDS for w in pair), ATR_SHORT, ATR_LONG,
                              *PARKINSON_WINDOWS}))
_SD_DDOF = np.array([1.0, 0.0])  # returns: sample std (rv); closes: population std (Bollinger)

# Largest lookback of any feature: ret_168, rv_168, rsi_168, atr_ratio_14_168 each need the 168
# candles before the current one (a 1-candle return/true range consumes one extra candle).
MAX_LOOKBACK = 168

_COLUMNS = ("open", "high", "low", "close", "volume")
_SECONDS_PER_UNIT = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _build_names() -> list[str]:
    names = [f"ret_{w}" for w in WINDOWS]
    names += [f"ret1_lag{k}" for k in range(N_LAGS)]
    names += [f"rv_{w}" for w in WINDOWS]
    names += [f"rv_ratio_{a}_{b}" for a, b in RV_RATIOS]
    names += [f"sma_dist_{w}" for w in WINDOWS]
    names += [f"sma_slope_{w}" for w in SLOPE_WINDOWS]
    names += [f"rsi_{w}" for w in RSI_WINDOWS]
    names += [f"bb_pos_{w}" for w in BB_WINDOWS]
    names += [f"bb_width_{w}" for w in BB_WINDOWS]
    names += [f"vlm_ratio_{w}" for w in VOLUME_WINDOWS]
    names += [f"vlm_trend_{a}_{b}" for a, b in VOLUME_TRENDS]
    names += [f"range_pos_{w}" for w in RANGE_WINDOWS]
    names += [f"atr_pct_{ATR_SHORT}", f"atr_ratio_{ATR_SHORT}_{ATR_LONG}"]
    names += ["body", "upper_wick", "lower_wick"]
    names += ["hour_sin", "hour_cos", "dow_sin", "dow_cos"]
    names += [f"parkinson_{w}" for w in PARKINSON_WINDOWS]
    names += [f"hl_lag{k}" for k in range(N_LAGS)]
    return names


_NAMES = tuple(_build_names())


def feature_names() -> list[str]:
    """Feature names in the stable column order of :func:`compute_features`.

    ``ret_w``: log return over w candles. ``ret1_lagk``: 1-candle log return k candles ago
    (``lag0`` = the current candle). ``rv_w``: realised volatility, sample std of w 1-candle log
    returns; ``rv_ratio_a_b = rv_a / rv_b``. ``sma_dist_w = close / SMA_w - 1``.
    ``sma_slope_w = SMA_w(t) / SMA_w(t - w//2) - 1``. ``rsi_w``: Cutler's RSI (simple means of
    gains and losses), 0..100. ``bb_pos_w``: position of close in the Bollinger band (mean +- 2
    population std; 0 = lower band, 1 = upper band); ``bb_width_w = 4 std / mean``.
    ``vlm_ratio_w = volume / mean volume``; ``vlm_trend_a_b`` = mean volume over a / over b.
    ``range_pos_w``: close within the w-candle low..high range, 0..1. ``atr_pct_14 = ATR_14 /
    close``; ``atr_ratio_14_168 = ATR_14 / ATR_168`` (ATR = simple mean of true range).
    ``body``, ``upper_wick``, ``lower_wick``: parts of the candle's high-low range (body signed).
    ``hour_*``/``dow_*``: UTC hour of day (with minutes) and day of week of the candle's open time
    on the unit circle. ``parkinson_w``: Parkinson high-low volatility estimator,
    ``sqrt(mean(log(high / low)**2) / (4 log 2))`` over w candles. ``hl_lagk``: the log range
    ``log(high / low)`` of the candle k candles ago (v2; with ``parkinson_w`` it gives the HMM its
    per-candle and per-block range, which measures volatility far better than a return does).
    """
    return list(_NAMES)


# --- numpy building blocks (all trailing, all NaN-propagating) -----------------------------------


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    """``x[t - k]`` at ``t`` (NaN where t < k): a value from the past, never the future."""
    out = np.full(x.shape[0], np.nan)
    if k < x.shape[0]:
        out[k:] = x[: x.shape[0] - k]
    return out


def _windows(x: np.ndarray, w: int) -> np.ndarray:
    """Read-only ``(k, n - w + 1, w)`` view of the ``(k, n)`` series ``x`` whose ``[i, j]`` is
    ``x[i, j .. j + w - 1]`` (needs n >= w).

    Built directly with ``np.ndarray`` (numpy checks it against the buffer's size): the same view
    as ``sliding_window_view`` at a twentieth of the call overhead, which matters on the hot path.
    """
    x = np.ascontiguousarray(x)
    row, step = x.strides
    return np.ndarray((x.shape[0], x.shape[1] - w + 1, w), dtype=x.dtype, buffer=x,
                      strides=(row, step, step))


def _trailing(x: np.ndarray, w: int, reduce: Callable[[np.ndarray], np.ndarray],
              tail: int | None) -> np.ndarray:
    """``reduce`` of each trailing window ``x[:, t - w + 1 .. t]`` of the ``(k, n)`` series
    ``x`` (several series share one call: the hot path pays numpy's per-call cost once);
    NaN for the first w - 1 columns. ``tail``: only the windows ending in the last ``tail``
    columns are reduced, the others left NaN (the hot path wants one row, not 169).

    Each window is reduced on its own (no running sums), so the value at t depends only on those
    w values, bit for bit; a NaN inside the window propagates, which keeps warm-up rows honest.
    """
    out = np.full(x.shape, np.nan)
    first = w - 1 if tail is None else max(w - 1, x.shape[1] - tail)
    if x.shape[1] > first:
        out[:, first:] = reduce(_windows(x[:, first - w + 1 :], w))
    return out


def _mean(x: np.ndarray, w: int, tail: int | None) -> np.ndarray:
    return _trailing(x, w, lambda win: np.add.reduce(win, axis=2) / w, tail)


def _max(x: np.ndarray, w: int, tail: int | None) -> np.ndarray:
    return _trailing(x, w, lambda win: np.maximum.reduce(win, axis=2), tail)


def _std(x: np.ndarray, w: int, ddof: np.ndarray, tail: int | None) -> np.ndarray:
    """Rolling standard deviation of each series (``ddof`` one per series), computed on
    deviations from each window's last value.

    The shift is exact for constant windows, so a flat window gives std == 0 exactly (and the
    ratios built on it NaN) instead of rounding noise; it also avoids cancellation on prices.
    """

    def reduce(win: np.ndarray) -> np.ndarray:
        dev = win - win[:, :, -1:]
        dev -= (np.add.reduce(dev, axis=2) / w)[:, :, None]
        return np.sqrt(np.add.reduce(dev * dev, axis=2) / (w - ddof)[:, None])

    return _trailing(x, w, reduce, tail)


def _epoch_seconds(index: pd.DatetimeIndex) -> np.ndarray:
    """Seconds since the Unix epoch (UTC) for each open time; naive times are taken as UTC."""
    return index.asi8 // _SECONDS_PER_UNIT[index.unit]


def _columns(
    o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray, v: np.ndarray, sec: np.ndarray,
    wanted: int | None = None,
) -> dict[str, np.ndarray]:
    """All features as 1-D arrays aligned with the input rows. ``wanted``: only the last
    ``wanted`` rows are (the others may hold NaN where a window was not reduced)."""
    # the SMA slope compares an SMA with itself w // 2 candles earlier: those rows are needed too
    tail = None if wanted is None else wanted + max(w // 2 for w in SLOPE_WINDOWS)
    f: dict[str, np.ndarray] = {}
    log_c = np.log(c)
    lr1 = log_c - _shift(log_c, 1)  # 1-candle log return (uses the previous close)

    for w in WINDOWS:
        f[f"ret_{w}"] = log_c - _shift(log_c, w)
    for k in range(N_LAGS):
        f[f"ret1_lag{k}"] = _shift(lr1, k)

    prev_c = _shift(c, 1)
    diff = c - prev_c
    gain, loss = np.maximum(diff, 0.0), np.maximum(-diff, 0.0)  # np.maximum keeps NaN
    true_range = np.maximum(h - low, np.maximum(np.abs(h - prev_c), np.abs(low - prev_c)))
    log_range = np.log(h / low)
    hl2 = log_range**2
    # One reduction per window for all the series that need it (a mean nobody uses costs
    # nothing next to a numpy call), and one per window for both standard deviations.
    averaged, spread = np.stack([c, gain, loss, v, true_range, hl2]), np.stack([lr1, c])
    means = {w: _mean(averaged, w, tail) for w in _MEAN_WINDOWS}
    sds = {w: _std(spread, w, _SD_DDOF, tail) for w in WINDOWS}

    rv = {w: sds[w][0] for w in WINDOWS}
    for w in WINDOWS:
        f[f"rv_{w}"] = rv[w]
    for a, b in RV_RATIOS:
        f[f"rv_ratio_{a}_{b}"] = rv[a] / rv[b]

    sma = {w: means[w][0] for w in WINDOWS}
    for w in WINDOWS:
        f[f"sma_dist_{w}"] = c / sma[w] - 1.0
    for w in SLOPE_WINDOWS:
        f[f"sma_slope_{w}"] = sma[w] / _shift(sma[w], w // 2) - 1.0

    for w in RSI_WINDOWS:
        g, ls = means[w][1], means[w][2]
        f[f"rsi_{w}"] = 100.0 * g / (g + ls)  # = 100 - 100 / (1 + g / ls), finite when ls == 0

    bb_sd = {w: sds[w][1] for w in BB_WINDOWS}  # population std, as in Bollinger
    for w in BB_WINDOWS:
        f[f"bb_pos_{w}"] = (c - sma[w] + 2.0 * bb_sd[w]) / (4.0 * bb_sd[w])
    for w in BB_WINDOWS:
        f[f"bb_width_{w}"] = 4.0 * bb_sd[w] / sma[w]

    for w in VOLUME_WINDOWS:
        f[f"vlm_ratio_{w}"] = v / means[w][3]
    for a, b in VOLUME_TRENDS:
        f[f"vlm_trend_{a}_{b}"] = means[a][3] / means[b][3]

    extremes = np.stack([h, -low])  # the low's minimum is minus the maximum of its negation
    for w in RANGE_WINDOWS:
        hi, neg_lo = _max(extremes, w, tail)
        f[f"range_pos_{w}"] = (c + neg_lo) / (hi + neg_lo)

    atr_s, atr_l = means[ATR_SHORT][4], means[ATR_LONG][4]
    f[f"atr_pct_{ATR_SHORT}"] = atr_s / c
    f[f"atr_ratio_{ATR_SHORT}_{ATR_LONG}"] = atr_s / atr_l

    span = h - low
    f["body"] = (c - o) / span
    f["upper_wick"] = (h - np.maximum(o, c)) / span
    f["lower_wick"] = (np.minimum(o, c) - low) / span

    hour = (sec % 86_400) / 3_600.0  # fractional UTC hour, so sub-hourly candles differ
    dow = (sec // 86_400 + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    f["hour_sin"], f["hour_cos"] = np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24)
    f["dow_sin"], f["dow_cos"] = np.sin(2 * np.pi * dow / 7), np.cos(2 * np.pi * dow / 7)

    for w in PARKINSON_WINDOWS:
        f[f"parkinson_{w}"] = np.sqrt(means[w][5] / (4.0 * np.log(2.0)))
    for k in range(N_LAGS):
        f[f"hl_lag{k}"] = _shift(log_range, k)
    return f


def _matrix(candles: pd.DataFrame, timeframe: str, last: int | None = None,
            wanted: int | None = None) -> np.ndarray:
    """Validate ``candles`` and return the (rows, features) float64 matrix.

    With ``last``, only the last ``last`` rows are used (the hot path never touches older data);
    with ``wanted``, only the last ``wanted`` rows are computed and returned.
    """
    timeframe_to_timedelta(timeframe)  # validates; windows are in candles (see module docstring)
    index = candles.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(f"candles need a DatetimeIndex of open times, got {type(index).__name__}")
    missing = [col for col in _COLUMNS if col not in candles.columns]
    if missing:
        raise DataError(f"candles lack columns {missing}; need {list(_COLUMNS)}")
    rows = slice(-last, None) if last else slice(None)
    index = index[rows]
    if not (index.is_monotonic_increasing and index.is_unique):
        raise DataError("candle open times must be sorted ascending and unique")
    if tuple(candles.columns) == _COLUMNS:  # a candle frame as read: one block, one copy
        arrays = list(np.ascontiguousarray(candles.to_numpy(dtype=np.float64)[rows].T))
    else:
        arrays = [candles[col].to_numpy(dtype=np.float64)[rows] for col in _COLUMNS]
    with np.errstate(all="ignore"):
        cols = _columns(*arrays, _epoch_seconds(index), wanted=wanted)
        kept = slice(-wanted, None) if wanted else slice(None)
        out = np.column_stack([cols[name][kept] for name in _NAMES])
    out[~np.isfinite(out)] = np.nan  # division by zero / log(0): NaN, never inf
    return out


def compute_features(candles: pd.DataFrame, timeframe: str = "1h") -> pd.DataFrame:
    """Features for every candle: same index as ``candles``, float64 columns in
    :func:`feature_names` order.

    ``candles`` follows the project's candle contract (UTC open-time ``DatetimeIndex`` named
    ``time``; float columns open/high/low/close/volume; sorted, unique). It is not modified.
    Rows with fewer than ``MAX_LOOKBACK`` previous candles may hold NaN (warm-up).
    ``timeframe`` is validated; the windows are counted in candles, so it does not change values.
    """
    return pd.DataFrame(_matrix(candles, timeframe), index=candles.index, columns=list(_NAMES))


def latest_features(candles: pd.DataFrame, timeframe: str = "1h") -> np.ndarray:
    """Features of the last candle as a 1-D float64 array (hot path for live prediction).

    Uses only the last ``MAX_LOOKBACK + 1`` rows and is equal to
    ``compute_features(candles).iloc[-1]``. With fewer rows, the long-window features are NaN.
    """
    if len(candles) == 0:
        raise DataError("latest_features needs at least one candle")
    return _matrix(candles, timeframe, last=MAX_LOOKBACK + 1, wanted=1)[-1]


def warm_rows(candles: pd.DataFrame) -> pd.Series:
    """Boolean Series on ``candles.index``: True where the row has at least ``MAX_LOOKBACK``
    previous candles, i.e. every feature has its full window (use it to drop warm-up rows).

    Works on a candle frame or on the output of :func:`compute_features` (same index).
    """
    return pd.Series(np.arange(len(candles)) >= MAX_LOOKBACK, index=candles.index, name="warm")
