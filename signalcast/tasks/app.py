"""The Celery application: JSON only, three queues, at-least-once delivery.

Tasks are acknowledged late (after they ran) so a crashed worker's task is redelivered; every task
is idempotent, so a redelivery changes nothing. Messages are JSON only: pickle would let anyone
who can write to Redis run code on the workers.

Without a broker URL the app runs *embedded*: an in-memory transport and a real Celery worker
thread inside the process (see :func:`embedded_worker`), so the demo needs no external service.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from celery import Celery
from celery.signals import worker_process_init
from kombu import Queue

from signalcast.config import Settings

QUEUES = ("predict", "train", "alerts")
TRAIN_SOFT_LIMIT_S = 30 * 60
TRAIN_HARD_LIMIT_S = 35 * 60
# Above the longest train time limit plus queue wait, so a long training is not redelivered
# to a second worker while the first still runs (celery #5935).
VISIBILITY_TIMEOUT_S = 2 * 60 * 60
EMBEDDED_BROKER = "memory://localhost/"
EMBEDDED_BACKEND = "cache+memory://"

app = Celery("signalcast", include=["signalcast.tasks.tasks"])


def configure(settings: Settings, celery_app: Celery = app) -> Celery:
    """Point the app at the broker in ``settings`` (or the embedded transport)."""
    broker = settings.env.broker_url or EMBEDDED_BROKER
    backend = settings.env.broker_url or EMBEDDED_BACKEND
    transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
    celery_app.conf.update(
        broker_url=broker,
        result_backend=backend,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="predict",
        task_routes={
            "signalcast.train": {"queue": "train"},
            "signalcast.send_alerts": {"queue": "alerts"},
        },
        broker_transport_options=transport_options,
        result_backend_transport_options=transport_options,
        visibility_timeout=VISIBILITY_TIMEOUT_S,
        broker_connection_retry_on_startup=True,
        result_expires=24 * 3600,
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        task_track_started=True,
    )
    return celery_app


@worker_process_init.connect
def _fresh_process(**_kwargs) -> None:
    """A forked pool child must not share its parent's database connections."""
    from signalcast.db.engine import dispose_engines

    dispose_engines()


@contextmanager
def embedded_worker(celery_app: Celery = app) -> Iterator[object]:
    """A real Celery worker consuming every queue, in a thread of this process."""
    from celery.contrib.testing.worker import start_worker

    with start_worker(celery_app, pool="solo", concurrency=1, perform_ping_check=False,
                      queues=list(QUEUES), loglevel="WARNING", shutdown_timeout=30) as worker:
        yield worker
