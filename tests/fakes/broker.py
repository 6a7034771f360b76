"""Point this test process's Celery app at a broker, forgetting connections to an earlier one.

``configure`` changes the app's settings, but the app keeps the connection and producer pools
it already built, and the result backend it made for this thread: a test after one that used
the embedded (memory) broker would otherwise keep publishing to memory and never see a
result. Tests that switch the broker also forget it when they end, so the next test's
``configure`` starts clean. (Worker processes are fresh and need none of this.)
"""

from __future__ import annotations

from celery import Celery

from signalcast.config import Settings
from signalcast.tasks.app import app, configure


def forget_broker(celery_app: Celery = app) -> None:
    celery_app.close()  # drops the connection pool ...
    celery_app.amqp._producer_pool = None  # ... the producer pool built on it ...
    celery_app._local.__dict__.pop("backend", None)  # ... and this thread's result backend


def use_broker(settings: Settings, celery_app: Celery = app) -> Celery:
    forget_broker(celery_app)
    return configure(settings, celery_app)
