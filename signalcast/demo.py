"""``signalcast demo``: the whole pipeline on one machine with no external service.

Synthetic history -> training (train queue) -> hourly ticks on a simulated clock through the
scheduler's own job functions and the Celery tasks (ingest, predict, resolve, send alerts) on a
real in-process Celery worker -> alerts on the console (and Telegram when a token is set) ->
a summary table. Everything lands in a fresh SQLite file whose path is printed at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from celery.result import AsyncResult
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from signalcast.config import Settings, load_settings
from signalcast.db.engine import init_db, session_scope
from signalcast.notifier.transports import set_console_writer
from signalcast.runtime import set_settings
from signalcast.scheduler.jobs import candle_close_tick, train_signatures
from signalcast.services import summary
from signalcast.tasks.app import app, configure, embedded_worker
from signalcast.tasks.tasks import ingest
from signalcast.timeframes import timeframe_to_timedelta

TASK_TIMEOUT_S = 600


@dataclass
class DemoReport:
    database: Path
    wall_seconds: float
    ticks: int
    task_runs: int
    failed_tasks: int
    counts: dict[str, int] = field(default_factory=dict)
    targets: list[summary.TargetSummary] = field(default_factory=list)


def demo_settings(database: Path, config: Path | None = None) -> Settings:
    """The configuration with the demo's own database, the embedded broker and synthetic data."""
    settings = load_settings(config, database_url=f"sqlite:///{database}", broker_url=None)
    file = settings.file.model_copy(update={
        "data": settings.file.data.model_copy(update={"source": "synthetic"})})
    return Settings(file, settings.env, settings.source)


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


def run_demo(workdir: Path = Path("signalcast-demo"), *, ticks: int = 72,
             history_days: int = 400, config: Path | None = None,
             console: Console | None = None) -> DemoReport:
    console = console or Console()
    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    database = (workdir / "demo.db").resolve()
    for stale in workdir.glob("demo.db*"):  # the demo's own previous run
        stale.unlink()
    settings = demo_settings(database, config)
    set_settings(settings)
    configure(settings)
    app.conf.broker_transport_options = {**app.conf.broker_transport_options,
                                         "polling_interval": 0.005}
    engine = init_db(settings.env.database_url)
    step = timeframe_to_timedelta(settings.assets[0].timeframe)
    t0 = settings.data.start + timedelta(days=history_days)
    assets = ", ".join(a.symbol for a in settings.assets)
    console.print(f"[bold]signalcast demo[/bold]: {assets} x "
                  f"{', '.join(t.key for t in settings.targets)}; database {database}")

    failures: list[str] = []
    set_console_writer(lambda text: console.print(text, markup=False, highlight=False,
                                                    soft_wrap=True))
    with embedded_worker(app):
        console.print(f"ingesting {history_days} days of synthetic history ...")
        for asset in settings.assets:
            failure = wait_chain(ingest.delay(asset.symbol, t0.isoformat()))
            if failure:
                raise RuntimeError(f"ingest failed: {failure}")
        _train_with_progress(train_signatures(settings, t0), console, failures)

        console.print(f"replaying {ticks} ticks on a simulated clock from {t0:%Y-%m-%d %H:%M} "
                      "UTC (alerts print as they are sent)")
        delay = timedelta(seconds=settings.schedule.predict_delay_seconds)
        for i in range(1, ticks + 1):
            now = t0 + i * step + delay
            for result in candle_close_tick(engine, settings, now):
                failure = wait_chain(result)
                if failure:
                    failures.append(failure)
            if i % 24 == 0 or i == ticks:
                console.print(f"  tick {i}/{ticks} ({now:%Y-%m-%d %H:%M} UTC)")

    with session_scope(engine) as session:
        report = DemoReport(
            database=database, wall_seconds=time.perf_counter() - started, ticks=ticks,
            task_runs=sum(sum(s.values()) for s in summary.task_counts(session).values()),
            failed_tasks=len(failures), counts=summary.table_counts(session),
            targets=summary.target_summaries(session))
    print_report(report, console)
    for failure in failures[:5]:
        console.print(f"[red]failed task[/red] {failure}")
    set_settings(None)
    set_console_writer(None)
    return report


def _train_with_progress(signatures: list, console: Console, failures: list) -> None:
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


def print_report(report: DemoReport, console: Console) -> None:
    table = Table(title="signalcast demo summary")
    for col in ("asset", "target", "preds", "resolved", "expired", "hit rate", "alerts"):
        table.add_column(col, justify="left" if col in ("asset", "target") else "right")
    for s in report.targets:
        rate = "-" if s.hit_rate is None else f"{s.hit_rate:.0%}"
        table.add_row(s.asset, s.target, str(s.predictions), str(s.resolved), str(s.expired),
                      rate, str(s.alerts_sent))
    total = summary.TargetSummary("all", "", *(sum(getattr(s, f) for s in report.targets)
                                               for f in ("predictions", "resolved", "expired",
                                                         "hits", "alerts_sent")))
    table.add_row("[bold]all[/bold]", "", str(total.predictions), str(total.resolved),
                  str(total.expired), "-" if total.hit_rate is None else f"{total.hit_rate:.0%}",
                  str(total.alerts_sent))
    console.print(table)
    console.print(f"{report.ticks} ticks, {report.task_runs} task runs "
                  f"({report.failed_tasks} failed) in {report.wall_seconds:.1f} s")
    console.print(f"rows: {report.counts}")
    console.print(f"database: {report.database}")
