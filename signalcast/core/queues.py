"""The work queues, by name. Workers are started per queue and scaled independently:
``predict`` (short, latency-critical), ``train`` (long), ``alerts`` (one consumer keeps the
Telegram rate limit honest)."""

QUEUES = ("predict", "train", "alerts")
