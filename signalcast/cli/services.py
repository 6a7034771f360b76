"""Long-running processes and their probes: ``worker``, ``scheduler``, ``bot``, ``metrics``,
``web`` and ``health``. Thin: the work lives in :mod:`signalcast.tasks`,
:mod:`signalcast.scheduler`, :mod:`signalcast.bot`, :mod:`signalcast.observability` and
:mod:`signalcast.web`."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta
from typing import Annotated

import typer

from signalcast.cli.common import ConfigOpt, load_settings
from signalcast.core.errors import SignalcastError

log = logging.getLogger(__name__)


def worker(
    queues: Annotated[str, typer.Option("--queues", "-Q", help="comma-separated")]
    = "predict,train,alerts",
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = 1,
    loglevel: Annotated[str, typer.Option()] = "INFO",
    hostname: Annotated[str | None, typer.Option("--hostname", "-n")] = None,
    config: ConfigOpt = None,
) -> None:
    """Start a Celery worker process consuming QUEUES (needs SIGNALCAST_BROKER_URL)."""
    from signalcast.config.runtime import set_settings
    from signalcast.tasks.app import QUEUES, app, configure, pin_model_threads

    settings = load_settings(config)
    pin_model_threads(settings.workers.model_threads)
    if settings.env.broker_url is None:
        raise SignalcastError("signalcast worker needs SIGNALCAST_BROKER_URL (redis://host:6379/0)"
                              "; on one machine without Redis, `signalcast demo` runs embedded")
    unknown = set(queues.split(",")) - set(QUEUES)
    if unknown:
        raise typer.BadParameter(f"unknown queue(s) {', '.join(sorted(unknown))}; "
                                 f"known: {', '.join(QUEUES)}")
    set_settings(settings)
    configure(settings)
    argv = ["worker", "-Q", queues, "-c", str(concurrency), "--loglevel", loglevel,
            "--pool", "prefork"]
    if hostname:
        argv += ["-n", hostname]
    from signalcast.tasks.app import route_celery_logging

    route_celery_logging()
    app.worker_main(argv)


def scheduler(config: ConfigOpt = None) -> None:
    """Start the APScheduler process that enqueues ticks and retraining."""
    from signalcast.core.logs import set_service_level
    from signalcast.db.engine import init_db
    from signalcast.scheduler.process import run_scheduler
    from signalcast.tasks.app import configure

    set_service_level(logging.INFO)  # a long-running service says what it does
    settings = load_settings(config)
    if settings.env.broker_url is None:
        raise SignalcastError("signalcast scheduler needs SIGNALCAST_BROKER_URL so workers can "
                              "receive its ticks; `signalcast demo` runs everything embedded")
    init_db(settings.env.database_url)
    configure(settings)
    run_scheduler(settings)


def bot(config: ConfigOpt = None) -> None:
    """Run the Telegram command bot: one polling process per bot token (needs
    SIGNALCAST_TELEGRAM_TOKEN; SIGNALCAST_TELEGRAM_ADMINS/VIEWERS say who may use it)."""
    from signalcast.bot.app import run_bot

    logging.getLogger().setLevel(logging.INFO)  # a long-running service: say what it does
    run_bot(load_settings(config))


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
    from signalcast.core.logs import set_service_level
    from signalcast.db.engine import get_engine
    from signalcast.observability.metrics import MetricsServer, SignalcastCollector

    set_service_level(logging.INFO)
    settings = load_settings(config)
    collector = SignalcastCollector(get_engine(settings.env.database_url), settings,
                                    window=timedelta(minutes=window_minutes), cache_seconds=10)
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


def web(
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free one)")]
    = 8080,
    host: Annotated[str, typer.Option(
        help="address to listen on; beyond 127.0.0.1 it needs SIGNALCAST_WEB_TOKEN")]
    = "127.0.0.1",
    config: ConfigOpt = None,
) -> None:
    """Serve the read-only dashboard on HOST:PORT: overview, per (asset, target) charts, alerts
    log, task runs (docs/web.md)."""
    from signalcast.core.logs import set_service_level
    from signalcast.db.engine import init_db
    from signalcast.tasks.enqueuer import probe_for
    from signalcast.web.server import WebServer, serve_until

    set_service_level(logging.INFO)
    settings = load_settings(config)
    token = settings.env.web_token.get_secret_value() if settings.env.web_token else None
    server = WebServer(init_db(settings.env.database_url), settings, host=host, port=port,
                       token=token, probe=probe_for(settings))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def started(url: str) -> None:
        log.info("serving the dashboard on %s%s", url, "" if token else " (no token)")
        typer.echo(f"serving the dashboard on {url}", err=True)

    serve_until(stop, server, on_start=started)


def health(
    worker: Annotated[str | None, typer.Option(
        "--worker", metavar="NAME",
        help="also ping this Celery worker, e.g. predict@%h (%h: this host's name)")] = None,
    scheduler: Annotated[bool, typer.Option(
        "--scheduler", help="also require a scheduler leader (this replica or another)")]
    = False,
    bot: Annotated[bool, typer.Option(
        "--bot", help="also require the bot to be polling (its liveness file is fresh)")]
    = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds per check")] = 3.0,
    config: ConfigOpt = None,
) -> None:
    """Check the database and Redis answer (and a worker, the scheduler lock, or the bot's
    polling): one line per check, exit code 1 when one fails. The containers' HEALTHCHECK."""
    from signalcast.observability.health import run_checks

    checks = run_checks(load_settings(config), worker=worker, scheduler=scheduler, bot=bot,
                        timeout=timeout)
    for check in checks:
        typer.echo(check.line())
    if not all(check.ok for check in checks):
        raise typer.Exit(1)
