"""A batched predict tick in this process, and its parts: what one predict worker spends per
asset tick outside Celery. Run by ``bench_scaling.py`` (``hot_path_ms``), once for this checkout
and, with ``--code-before``, alternately for the older one (``PYTHONPATH``), on the same
database and machine; prints one JSON line of medians in milliseconds per asset tick.

    python bench/hot_path.py CONFIG DATABASE_URL FIRST_CANDLE_ISO COUNT
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import datetime, timedelta


def main() -> None:
    config, db_url, first, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    import signalcast
    from signalcast.config import load_settings
    from signalcast.config.runtime import set_settings
    from signalcast.db.candles import read_latest_candles
    from signalcast.db.engine import init_db, session_scope
    from signalcast.features import MAX_LOOKBACK, latest_features
    from signalcast.pipeline.predict import predict_candles

    settings = load_settings(config, database_url=db_url, broker_url=None, telegram_token=None)
    set_settings(settings)
    engine = init_db(db_url)
    symbols = [a.symbol for a in settings.assets]
    timeframe = settings.assets[0].timeframe
    candles = [datetime.fromisoformat(first) - i * timedelta(hours=1) for i in range(count)]
    n = len(symbols)
    tick, read, features = [], [], []
    for k, candle in enumerate(candles):
        start = time.perf_counter()
        predict_candles(engine, settings, symbols, candle)  # fresh candles: real inserts
        if k >= 3:  # the first ones load and verify the models
            tick.append((time.perf_counter() - start) / n)
        with session_scope(engine, readonly=True) as session:
            start = time.perf_counter()
            frames = read_latest_candles(session, symbols, timeframe, end=candle,
                                         limit=MAX_LOOKBACK + 1)
            read.append((time.perf_counter() - start) / n)
        for frame in frames.values():
            start = time.perf_counter()
            latest_features(frame, timeframe)
            features.append(time.perf_counter() - start)
    med = statistics.median
    print(json.dumps({"code": str(signalcast.__file__).rsplit("/signalcast/", 1)[0],
                      "batch_tick_ms_per_asset": round(med(tick) * 1000, 2),
                      "candle_read_ms_per_asset": round(med(read) * 1000, 2),
                      "features_ms": round(med(features) * 1000, 3), "ticks": len(tick)}))


if __name__ == "__main__":
    main()
