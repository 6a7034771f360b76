"""The Celery application: JSON only, three queues, at-least-once delivery.

Tasks of the ``predict`` and ``alerts`` queues are acknowledged late (after they ran) so a
crashed worker's task is redelivered; every task is idempotent, so a redelivery changes nothing.
Messages are JSON only: pickle would let anyone who can write to Redis run code on the workers.

On time (docs/reliability.md): Redis redelivers an unacknowledged message after the visibility
timeout, and that timeout is one per broker connection, not per queue. It is sized for the short
queues (``workers.visibility_timeout_seconds``, 200 s: above every late-acknowledged task's hard
time limit), so a dead host's prediction comes back within minutes. Training keeps its own
terms: ``train`` and ``evaluate_promotions`` are acknowledged on receipt, so an hours-long fit
never waits on (or is redelivered by) that timeout; a killed pool child is retried at once
(``retry_on_worker_lost``), a dead host's training is re-enqueued by the scheduler's reconciler
once its hard time limit has passed (scheduler/reconcile.py). Workers take a message only when a
process is free (``worker_disable_prefetch``): nothing waits unacknowledged behind a long task.

Without a broker URL the app runs *embedded*: an in-memory transport and a real Celery worker
thread inside the process (see :func:`embedded_worker`), so the demo needs no external service.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_process_init
from kombu import Queue

from signalcast.config import Settings
from signalcast.core.errors import ConfigError
from signalcast.core.logs import set_service_level
from signalcast.core.queues import QUEUES

log = logging.getLogger(__name__)

# (soft, hard) time limits per task, seconds. Enforced by the prefork pool only. The visibility
# timeout (config ``workers.visibility_timeout_seconds``) must stay above the longest of these
# among late-acknowledged tasks, or a task is redelivered while it still runs (celery #5935).
TIME_LIMITS = {
    "signalcast.train": (30 * 60, 35 * 60),
    "signalcast.train_asset": (90 * 60, 95 * 60),  # every target of one asset, one by one
    "signalcast.ingest": (150, 180),  # a tick's ingest; long backfills run from the CLI
    "signalcast.predict": (60, 90),
    # a tick's batches (schedule.tick_batch_assets, at most 100 assets)
    "signalcast.ingest_assets": (150, 180),
    "signalcast.predict_assets": (120, 150),
    "signalcast.resolve": (120, 180),
    "signalcast.send_alerts": (120, 180),
    "signalcast.evaluate_promotions": (10 * 60, 12 * 60),
}
EMBEDDED_BROKER = "memory://localhost/"
EMBEDDED_BACKEND = "cache+memory://"

ACKED_ON_RECEIPT = ("signalcast.train", "signalcast.train_asset",
                    "signalcast.evaluate_promotions")
LONGEST_RETRY_COUNTDOWN = 120  # tasks.RETRY retry_backoff_max: a countdown waits unacknowledged

app = Celery("signalcast", include=["signalcast.tasks.tasks"])


def check_visibility(visibility_timeout: int) -> None:
    """Refuse a visibility timeout that would redeliver a late-acknowledged task (or a retry
    waiting for its countdown) while it still runs."""
    longest = max([LONGEST_RETRY_COUNTDOWN, *(hard for name, (_soft, hard) in TIME_LIMITS.items()
                                              if name not in ACKED_ON_RECEIPT)])
    if visibility_timeout <= longest:
        raise ConfigError(
            f"workers.visibility_timeout_seconds is {visibility_timeout}; it must be above "
            f"{longest} s (the longest hard time limit of a predict/alerts task, or retry "
            "countdown), or a task is redelivered while it still runs. Set it to at least "
            f"{longest + 20}")


def configure(settings: Settings, celery_app: Celery = app) -> Celery:
    """Point the app at the broker in ``settings`` (or the embedded transport)."""
    broker = settings.env.broker_url or EMBEDDED_BROKER
    backend = settings.env.broker_url or EMBEDDED_BACKEND
    if celery_app.conf.broker_url not in (None, broker):
        _forget_broker(celery_app)
    # A fresh result backend: it caches finished results by task id in memory, and tick task
    # ids are deterministic, so a cached result from an earlier configuration could answer for
    # a task that has not run yet under this one.
    _retire_backend(celery_app)
    workers = settings.workers
    check_visibility(workers.visibility_timeout_seconds)
    transport_options = {"visibility_timeout": workers.visibility_timeout_seconds,
                         # look for a dead worker's messages every restore_sweep_seconds
                         "unacked_restore_interval": workers.restore_sweep_seconds,
                         "unacked_restore_throttle": 1}
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
        worker_disable_prefetch=settings.env.broker_url is not None,  # Redis only
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="predict",
        task_routes={
            "signalcast.train": {"queue": "train"},
            "signalcast.train_asset": {"queue": "train"},
            "signalcast.evaluate_promotions": {"queue": "train"},
            "signalcast.send_alerts": {"queue": "alerts"},
        },
        task_annotations={name: {"soft_time_limit": soft, "time_limit": hard}
                          for name, (soft, hard) in TIME_LIMITS.items()},
        broker_transport_options=transport_options,
        result_backend_transport_options=transport_options,
        visibility_timeout=workers.visibility_timeout_seconds,
        worker_max_memory_per_child=workers.max_memory_per_child_mb * 1024,  # in KiB
        worker_max_tasks_per_child=workers.max_tasks_per_child,
        worker_soft_shutdown_timeout=workers.soft_shutdown_seconds,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        result_expires=24 * 3600,
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        task_track_started=True,
    )
    return celery_app


def _forget_broker(celery_app: Celery) -> None:
    """Switching brokers in one process: the app keeps the connection and producer pools it
    built and this thread's result backend; drop them so the new broker is really used."""
    celery_app.close()
    celery_app.amqp._producer_pool = None
    _retire_backend(celery_app)


def _retire_backend(celery_app: Celery) -> None:
    """Drop this thread's result backend, and make the old one inert.

    Results created through it keep a reference; when the garbage collector destroys one
    (``AsyncResult.__del__``) the Redis backend unsubscribes its key, and if the old broker is
    gone that means reconnect attempts and log lines from inside whatever code the collector
    interrupted (seen in CI: in the middle of a module being compiled, which CPython 3.11
    then failed with "AST constructor recursion depth mismatch"). Closing its subscription and
    forgetting what it was subscribed to turns those late unsubscribes into no-ops."""
    backend = celery_app._local.__dict__.pop("backend", None)
    consumer = getattr(backend, "result_consumer", None)
    subscribed = getattr(consumer, "subscribed_to", None)
    if consumer is None or subscribed is None:
        return
    subscribed.clear()
    try:
        consumer.stop()
    except Exception:  # the old broker may be unreachable; closing is best effort
        log.debug("closing the previous result backend's subscription failed", exc_info=True)


@worker_process_init.connect
def _fresh_process(**_kwargs) -> None:
    """A forked pool child must not share its parent's database connections."""
    from signalcast.db.engine import dispose_engines

    dispose_engines()


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pin_model_threads(threads: int) -> None:
    """Limit native thread pools per worker process, before model libraries load: two 2-thread
    fits on 2 cores ran 5-10x slower than 1-thread fits (docs/ml-notes.md). Explicit env wins."""
    import os

    for var in THREAD_VARS:
        os.environ.setdefault(var, str(threads))


@contextmanager
def embedded_worker(celery_app: Celery = app) -> Iterator[object]:
    """A real Celery worker consuming every queue, in a thread of this process."""
    from celery.contrib.testing.worker import start_worker

    try:
        with start_worker(celery_app, pool="solo", concurrency=1, perform_ping_check=False,
                          queues=list(QUEUES), loglevel="WARNING", shutdown_timeout=30) as worker:
            yield worker
    finally:
        if str(celery_app.conf.broker_url or "").startswith("memory://"):
            _clear_memory_broker()


def _clear_memory_broker() -> None:
    """The in-process broker's queues are process-global (kombu keeps them on the class): what
    an embedded worker left queued (a drain still polling for its tick, a countdown retry) would
    otherwise be run by the next embedded worker of the process, against other settings. A
    process that ends loses them all the same; one embedded run leaves nothing to the next."""
    from kombu.transport.memory import Channel

    for queue in Channel.queues.values():
        queue.queue.clear()


def route_celery_logging() -> None:
    """Let a Celery worker log through our handler (JSON when chosen) instead of its own.

    Connecting ``setup_logging`` makes Celery leave the root logger, the task logger and the
    multiprocessing logger alone; the worker's ``--loglevel`` still applies unless
    SIGNALCAST_LOG_LEVEL chose a level."""
    setup_logging.connect(_celery_setup_logging, weak=False, dispatch_uid="signalcast-logs")


def _celery_setup_logging(loglevel: int | str | None = None, **_kwargs: Any) -> None:
    if loglevel is not None:
        set_service_level(loglevel)
