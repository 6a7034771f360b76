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
from signalcast.tasks.app import _forget_broker, app, configure


def forget_broker(celery_app: Celery = app) -> None:
    _forget_broker(celery_app)


def use_broker(settings: Settings, celery_app: Celery = app) -> Celery:
    forget_broker(celery_app)
    return configure(settings, celery_app)
