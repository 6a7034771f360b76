"""One synthetic market per configuration and process: a market caches its generated paths,
so ingestion and evaluation of the same configuration share them."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from signalcast.data.synthetic import SyntheticMarket

_shared: dict[tuple, SyntheticMarket] = {}
_shared_lock = threading.Lock()


def shared_market(symbols: Sequence[str], seed: int, timeframe: str,
                  start: datetime) -> SyntheticMarket:
    """The market of (symbols, seed, timeframe, start), made once per process."""
    key = (tuple(symbols), seed, timeframe, start)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = SyntheticMarket(list(symbols), seed=seed, timeframe=timeframe,
                                           start=start)
        return _shared[key]
