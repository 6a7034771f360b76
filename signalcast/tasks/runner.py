"""Run tasks from a command and wait for them: through the broker's workers when
``SIGNALCAST_BROKER_URL`` is set, else through an embedded worker in this process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from celery.result import AsyncResult
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

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
    """Wait for every link of a chain, oldest first. Returns the first failure, or None."""
    links = []
    while result is not None:
        links.append(result)
        result = result.parent
    for link in reversed(links):
        link.get(timeout=timeout, interval=0.005, propagate=False)
        if link.failed():
            return f"{link.id}: {link.result!r}"
    return None


def train_with_progress(signatures: list, console: Console, failures: list) -> None:
    """Enqueue train tasks and show a progress bar with each finished model's metrics."""
    results = [s.apply_async() for s in signatures]
    columns = (TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("", total=len(results))
        pending = list(results)
        while pending:
            for result in [r for r in pending if r.ready()]:
                pending.remove(result)
                progress.advance(bar)
                if result.failed():
                    failures.append(f"{result.id}: {result.result!r}")
                    progress.update(bar, description=f"[red]failed[/red] {result.id}")
                    continue
                r = result.result
                auc = r["metrics"]["auc"]
                progress.update(bar, description=(
                    f"{r['asset']} {r['target']} {r['family']} v{r['version']} "
                    f"AUC {auc:.3f} Brier {r['metrics']['brier']:.3f}"))
            time.sleep(0.05)
