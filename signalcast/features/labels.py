"""The one labelling function: which level does price touch first?

From ``close[t]``, scan candles ``t+1 .. t+H``:

* **UP** (1) if a candle's high reaches ``close[t] * (1 + pct)`` before any low reaches
  ``close[t] * (1 - pct)``;
* **DOWN** (0) in the mirror case;
* **EXPIRED** (-1) if neither level is touched within ``H`` candles (dropped from training,
  "expired" live);
* **PENDING** (-2) if neither is touched yet but fewer than ``H`` later candles exist.

**Tie rule.** When one candle touches both levels, its path inside the candle is unknown. We take
the level nearer the candle's *open* as touched first (a gap through a level is therefore resolved
correctly); if the open is exactly as far from both levels, DOWN wins (the conservative reading).

Training labels (:func:`first_touch_labels` over history) and live outcome resolution
(:func:`resolve_first_touch`) are the same code, so they can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

UP, DOWN, EXPIRED, PENDING = 1, 0, -1, -2
LABEL_NAMES = {UP: "up", DOWN: "down", EXPIRED: "expired", PENDING: "pending"}


def first_touch_labels(candles: pd.DataFrame, pct: float, horizon: int) -> pd.DataFrame:
    """Label every row of ``candles`` (columns open/high/low/close).

    Returns a frame on the same index with ``label`` (UP/DOWN/EXPIRED/PENDING) and
    ``bars`` (1..H: the candle that touched; 0 when nothing touched).

    >>> df = pd.DataFrame({"open": [100, 100, 101], "high": [100, 101, 103],
    ...                    "low": [100, 99.5, 100], "close": [100, 100.5, 102]})
    >>> first_touch_labels(df, 0.02, 2)["label"].tolist()
    [1, 1, -2]
    """
    _check_target(pct, horizon)
    close = candles["close"].to_numpy(dtype=float)
    n = len(close)
    labels = np.full(n, PENDING, dtype=np.int8)
    bars = np.zeros(n, dtype=np.int16)
    if n == 0:
        return pd.DataFrame({"label": labels, "bars": bars}, index=candles.index)

    # Pad the future with NaN so every row sees a window of exactly H later candles.
    horizon = int(horizon)
    pad = np.full(horizon, np.nan)
    fut = {
        col: sliding_window_view(
            np.concatenate([candles[col].to_numpy(dtype=float)[1:], pad, [np.nan]]), horizon
        )[:n]
        for col in ("open", "high", "low")
    }
    up_level = (close * (1 + pct))[:, None]
    down_level = (close * (1 - pct))[:, None]
    hit_up = fut["high"] >= up_level
    hit_down = fut["low"] <= down_level
    both = hit_up & hit_down
    up_first_in_tie = np.abs(up_level - fut["open"]) < np.abs(fut["open"] - down_level)
    first_up = hit_up & (~both | up_first_in_tie)

    touched = hit_up | hit_down
    any_touch = touched.any(axis=1)
    first_idx = np.argmax(touched, axis=1)
    rows = np.arange(n)
    labels[any_touch] = np.where(first_up[rows, first_idx], UP, DOWN)[any_touch]
    bars[any_touch] = first_idx[any_touch] + 1

    available = (n - 1) - rows  # later candles that exist for each row
    expired = ~any_touch & (available >= horizon)
    labels[expired] = EXPIRED
    return pd.DataFrame({"label": labels, "bars": bars}, index=candles.index)


def _check_target(pct: float, horizon: int) -> None:
    if not (np.isfinite(pct) and 0 < pct < 1) or int(horizon) != horizon or horizon < 1:
        raise ValueError(
            f"pct must be a finite number in (0, 1) and horizon a whole number >= 1, "
            f"got pct={pct}, horizon={horizon}"
        )


@dataclass(frozen=True)
class Resolution:
    label: int  # UP / DOWN / EXPIRED / PENDING
    bars: int  # candles until the touch; 0 when none

    @property
    def name(self) -> str:
        return LABEL_NAMES[self.label]


def resolve_first_touch(candles: pd.DataFrame, entry_time, pct: float, horizon: int) -> Resolution:
    """Resolve one live prediction made at the close of candle ``entry_time``.

    ``candles`` must contain the entry candle and the candles after it (more is fine).
    """
    _check_target(pct, horizon)
    entry = pd.Timestamp(entry_time)
    if entry.tzinfo is None and candles.index.tz is not None:
        entry = entry.tz_localize("UTC")  # naive times are UTC throughout signalcast
    window = candles.loc[entry:].iloc[: int(horizon) + 1]
    if window.empty or window.index[0] != entry:
        raise KeyError(f"entry candle {entry_time} is not in the candles given")
    row = first_touch_labels(window, pct, horizon).iloc[0]
    return Resolution(int(row["label"]), int(row["bars"]))
