"""Run tasks from a command and wait for them: through the broker's workers when
``SIGNALCAST_BROKER_URL`` is set, else through an embedded worker in this process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from celery.result import AsyncResult

from signalcast.config import Settings
from signalcast.config.runtime import set_settings
from signalcast.tasks.app import app, configure, embedded_worker


@contextmanager
def task_runtime(settings: Settings) -> Iterator[bool]:
    """Configure the app for ``settings``; yields True when an embedded worker runs here."""
    set_settings(settings)
    configure(settings)
    embedded = settings.env.broker_url is None
    if embedded:
        app.conf.broker_transport_options = {**app.conf.broker_transport_options,
                                             "polling_interval": 0.005}
    with embedded_worker(app) if embedded else nullcontext():
        yield embedded


TASK_TIMEOUT_S = 600


def wait_chain(result: AsyncResult, timeout: float = TASK_TIMEOUT_S) -> str | None:
    """Wait for every link of a chain (a group's members included), oldest first. Returns the
    first failure, or None."""
    links = []
    while result is not None:
        links.append(result)
        result = result.parent
    for link in reversed(links):
        for member in getattr(link, "results", None) or [link]:
            member.get(timeout=timeout, interval=0.005, propagate=False)
            if member.failed():
                return f"{member.id}: {member.result!r}"
    return None


def wait_tick(results: list[AsyncResult], timeout: float = TASK_TIMEOUT_S) -> list[str]:
    """Wait for a tick's per-asset work, then its one drain (``results.drain``, when any);
    returns the failures."""
    failures = [f for f in (wait_chain(r, timeout) for r in results) if f]
    drain = getattr(results, "drain", None)
    if drain is not None:
        failure = wait_chain(drain, timeout)
        if failure:
            failures.append(failure)
    return failures
