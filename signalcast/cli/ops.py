"""``signalcast metrics`` and ``signalcast health``: operations commands.

Registered on the main CLI as ``cli.command("metrics")(metrics)`` and
``cli.command("health")(health)``. Thin: the work lives in :mod:`signalcast.observability`.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from signalcast.config import load_settings

log = logging.getLogger(__name__)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-C", help="YAML config file "
                                                "(default: $SIGNALCAST_CONFIG or packaged)")]


def metrics(
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free one)")]
    = 9108,
    host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0 in a container)")]
    = "127.0.0.1",
    window_minutes: Annotated[int, typer.Option(
        min=1, help="latency quantiles cover the last this many minutes")] = 60,
    config: ConfigOpt = None,
) -> None:
    """Serve Prometheus metrics on HOST:PORT/metrics: predictions, fallbacks, hit rate, model
    age, alert latency, queue depths, read from the database and Redis at each scrape."""
    from signalcast.db.engine import get_engine
    from signalcast.observability.logs import set_service_level
    from signalcast.observability.metrics import MetricsServer, SignalcastCollector

    set_service_level(logging.INFO)
    settings = load_settings(config)
    collector = SignalcastCollector(get_engine(settings.env.database_url), settings,
                                    window=timedelta(minutes=window_minutes))
    server = MetricsServer(collector, host=host, port=port).start()
    log.info("serving metrics on http://%s:%d/metrics", host, server.port)
    typer.echo(f"serving metrics on http://{host}:{server.port}/metrics", err=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        server.close()


def health(
    worker: Annotated[str | None, typer.Option(
        "--worker", metavar="NAME",
        help="also ping this Celery worker, e.g. predict@%h (%h: this host's name)")] = None,
    scheduler: Annotated[bool, typer.Option(
        "--scheduler", help="also require a scheduler leader (this replica or another)")]
    = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds per check")] = 3.0,
    config: ConfigOpt = None,
) -> None:
    """Check the database and Redis answer (and a worker, or the scheduler lock): one line per
    check, exit code 1 when one fails. Used as the containers' HEALTHCHECK."""
    from signalcast.observability.health import run_checks

    checks = run_checks(load_settings(config), worker=worker, scheduler=scheduler,
                        timeout=timeout)
    for check in checks:
        typer.echo(check.line())
    if not all(check.ok for check in checks):
        raise typer.Exit(1)
