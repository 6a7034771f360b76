"""Candle sources and checks: files (CSV/Parquet), a synthetic market with an oracle, validation.

Every source returns the project's candle frame: a UTC ``DatetimeIndex`` named ``time`` holding
candle open times (sorted, unique) and float64 columns ``open, high, low, close, volume``.
"""

from signalcast.data.loader import load_candles
from signalcast.data.synthetic import RegimeSpec, SyntheticMarket, TouchProbabilities
from signalcast.data.validation import ValidationReport, validate_candles

__all__ = [
    "RegimeSpec",
    "SyntheticMarket",
    "TouchProbabilities",
    "ValidationReport",
    "load_candles",
    "validate_candles",
]
