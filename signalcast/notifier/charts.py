"""Charts as PNG bytes for sendPhoto: a signal's recent candles with the +X% and -X% levels,
and the reliability diagram of what was served (the served report and the weekly summary).

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global figure
state), so it is safe in a worker process and in threads. Takes ~0.1 s for 72 candles.

>>> import pandas as pd
>>> idx = pd.date_range("2024-05-01", periods=3, freq="1h", tz="UTC")
>>> candles = pd.DataFrame({"open": [1, 2, 3], "high": [2, 3, 4], "low": [0.5, 1.5, 2.5],
...                         "close": [2, 3, 3.5]}, index=idx)
>>> signal_chart(candles, up_level=3.6, down_level=3.4, title="X/USDT")[:8]
b'\\x89PNG\\r\\n\\x1a\\n'
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["reliability_chart", "signal_chart"]

_UP, _DOWN, _PRICE = "#1a9850", "#d73027", "#4d4d4d"


def signal_chart(candles: pd.DataFrame, *, up_level: float, down_level: float, title: str,
                 up_label: str = "up level", down_label: str = "down level",
                 width: float = 8.0, height: float = 4.5, dpi: int = 100) -> bytes:
    """Candlesticks of ``candles`` (open/high/low/close, time index) with dashed lines at the
    two levels; returns a PNG. Raises ValueError when there is no candle to draw."""
    if candles.empty:
        raise ValueError("no candles to draw")
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(len(candles))
    o, h, lo, c = (candles[k].to_numpy(float) for k in ("open", "high", "low", "close"))
    colors = np.where(c >= o, _UP, _DOWN)
    ax.vlines(x, lo, h, colors=colors, linewidth=0.8)
    ax.bar(x, np.maximum(np.abs(c - o), 1e-12 * np.abs(c).max()), bottom=np.minimum(o, c),
           width=0.7, color=colors, edgecolor=colors)
    ax.axhline(up_level, color=_UP, linestyle="--", linewidth=1.2, label=up_label)
    ax.axhline(down_level, color=_DOWN, linestyle="--", linewidth=1.2, label=down_label)
    ax.axhline(c[-1], color=_PRICE, linestyle=":", linewidth=0.8, label="last close")
    ticks = np.linspace(0, len(candles) - 1, num=min(6, len(candles))).round().astype(int)
    ax.set_xticks(ticks, [candles.index[i].strftime("%m-%d %H:%M") for i in ticks], fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlim(-1, len(candles) + 2)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.grid(alpha=0.25)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=0.1)
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def reliability_chart(scores: dict, title: str, *, tolerance: float = 0.05,
                      dpi: int = 90) -> bytes | None:
    """The reliability diagram of served P(up first) and P(down first) against their observed
    frequency, marker area by count, with the counts per bin below; ``scores`` holds
    ``reliability_up`` / ``reliability_down`` bins (``lo, hi, n, predicted, observed``), ``n``
    and, when known, ``skill_up`` / ``skill_up_lower`` (shown in the title). None when no bin
    holds a prediction.

    >>> bins = [{"lo": 0.5, "hi": 0.6, "n": 9, "predicted": 0.55, "observed": 0.5}]
    >>> reliability_chart({"n": 9, "reliability_up": bins, "reliability_down": bins}, "X")[:4]
    b'\\x89PNG'
    """
    if not any(b["n"] for key in ("reliability_up", "reliability_down")
               for b in scores.get(key) or []):
        return None
    fig = Figure(figsize=(8, 5.5), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax, counts = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    ax.fill_between([0, 1], [-tolerance, 1 - tolerance], [tolerance, 1 + tolerance],
                    color="grey", alpha=0.12, linewidth=0, label=f"within {tolerance}")
    width = 1.0 / max(1, len(scores["reliability_up"]))
    for key, color, name, shift in (("reliability_up", _UP, "P(up first)", -0.25),
                                    ("reliability_down", _DOWN, "P(down first)", 0.25)):
        bins = [b for b in scores[key] if b["n"]]
        n = np.array([b["n"] for b in bins], float)
        ax.plot([b["predicted"] for b in bins], [b["observed"] for b in bins], color=color,
                linewidth=1)
        ax.scatter([b["predicted"] for b in bins], [b["observed"] for b in bins], color=color,
                   s=15 + 150 * n / max(1.0, n.max()) if len(n) else 15, label=name, zorder=3)
        centres = np.array([(b["lo"] + b["hi"]) / 2 for b in scores[key]])
        counts.bar(centres + shift * width, [b["n"] for b in scores[key]], width=width / 2,
                   color=color)
    skill = ""
    if scores.get("skill_up") is not None:
        skill = (f", Brier skill {scores['skill_up']:+.3f}, "
                 f"low {scores['skill_up_lower']:+.3f}")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed frequency",
           title=f"{title}: served reliability (n={scores['n']}{skill})")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.25)
    counts.set(xlabel="served probability", ylabel="predictions")
    counts.grid(alpha=0.25)
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
