"""The work queues, by name. Workers are started per queue and scaled independently:
``predict`` (short, latency-critical), ``train`` (long), ``alerts`` (one consumer keeps the
Telegram rate limit honest); and the ids and deadlines their work runs under, shared by the
scheduler and enqueuer (which publish to Celery) and the in-process replay (which may not)."""

from __future__ import annotations

from datetime import UTC, datetime

from signalcast.core.timeframes import timeframe_to_timedelta, utc

QUEUES = ("predict", "train", "alerts")


def tick_key(job: str, asset: str, candle_time: datetime, redo: int = 0) -> str:
    """The key of one asset's tick (its task ids are ``<key>:ingest|predict|resolve``)."""
    base = f"{job}:{asset}:{utc(candle_time).isoformat()}"
    return f"{base}:r{redo}" if redo else base


def tick_deadline(candle_time: datetime, timeframe: str, published: datetime | None = None
                  ) -> datetime:
    """The candle's next close, or one candle from publishing when that is already past."""
    step = timeframe_to_timedelta(timeframe)
    published = utc(published or datetime.now(UTC))
    next_close = utc(candle_time) + 2 * step
    return next_close if next_close > published else published + step


def train_task_id(asset: str, target: str, family: str, now: datetime,
                  history_candles: int | None = None) -> str:
    """A training's id; a drift retrain's window (``history_candles``) ends it ``:last<N>``."""
    task_id = f"train:{asset}:{target}:{family}:{utc(now).isoformat()}"
    return task_id if history_candles is None else f"{task_id}:last{int(history_candles)}"
