"""``signalcast demo``: the whole pipeline on one machine with no external service.

Synthetic history -> training (train queue) -> hourly ticks on a simulated clock through the
scheduler's own job functions and the Celery tasks (ingest, predict, resolve, send alerts) on a
real in-process Celery worker -> alerts on the console (and Telegram when a token is set) ->
a summary table. Everything lands in a fresh SQLite file whose path is printed at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from signalcast.cli.progress import train_with_progress
from signalcast.config import Settings, load_settings
from signalcast.config.runtime import set_settings
from signalcast.core.timeframes import timeframe_to_timedelta
from signalcast.db.engine import init_db, session_scope
from signalcast.notifier.transports import set_console_writer
from signalcast.ops import summary
from signalcast.scheduler.jobs import candle_close_tick
from signalcast.tasks.enqueuer import train_signatures
from signalcast.tasks.runner import task_runtime, wait_chain, wait_tick
from signalcast.tasks.tasks import ingest


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
    """The configuration with the demo's own database, the embedded broker and synthetic data.

    The demo replays past candles on a simulated clock, so its signals are as old as the
    replay by the wall clock: the signal age limit is widened to cover it."""
    settings = load_settings(config, database_url=f"sqlite:///{database}", broker_url=None)
    replay_age = datetime.now(UTC) - settings.file.data.start + timedelta(days=1)
    file = settings.file.model_copy(update={
        "data": settings.file.data.model_copy(update={"source": "synthetic"}),
        "alerts": settings.file.alerts.model_copy(update={
            "max_signal_age_seconds": int(replay_age.total_seconds())})})
    return Settings(file, settings.env, settings.source)


DEMO_CANDIDATES = ["hmm", "lightgbm"]


def quick_selection(settings: Settings) -> Settings:
    """The demo's fast path: unless the configuration lists ``models.candidates``, selection
    by evidence runs among :data:`DEMO_CANDIDATES` on 4 folds (a full selection among every
    built-in family costs about half a minute per (asset, target); the demo trains nine)."""
    if settings.file.models.candidates or settings.file.models.champion != "auto":
        return settings
    models = settings.file.models.model_copy(update={"candidates": list(DEMO_CANDIDATES)})
    training = settings.file.training.model_copy(update={"folds": 4, "bootstrap": 500})
    file = settings.file.model_copy(update={"models": models, "training": training})
    return Settings(file, settings.env, settings.source)


def run_demo(workdir: Path = Path("signalcast-demo"), *, ticks: int = 72,
             history_days: int = 400, config: Path | None = None,
             console: Console | None = None) -> DemoReport:
    console = console or Console()
    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    database = (workdir / "demo.db").resolve()
    for stale in workdir.glob("demo.db*"):  # the demo's own previous run
        stale.unlink()
    # no broker URL: the embedded worker
    settings = quick_selection(demo_settings(database, config))
    engine = init_db(settings.env.database_url)
    step = timeframe_to_timedelta(settings.assets[0].timeframe)
    t0 = settings.data.start + timedelta(days=history_days)
    assets = ", ".join(a.symbol for a in settings.assets)
    console.print(f"[bold]signalcast demo[/bold]: {assets} x "
                  f"{', '.join(t.key for t in settings.targets)}; database {database}")

    failures: list[str] = []
    set_console_writer(lambda text: console.print(text, markup=False, highlight=False,
                                                    soft_wrap=True))
    with task_runtime(settings):
        console.print(f"ingesting {history_days} days of synthetic history ...")
        for asset in settings.assets:
            failure = wait_chain(ingest.delay(asset.symbol, t0.isoformat()))
            if failure:
                raise RuntimeError(f"ingest failed: {failure}")
        train_with_progress(train_signatures(settings, t0), console, failures)

        console.print(f"replaying {ticks} ticks on a simulated clock from {t0:%Y-%m-%d %H:%M} "
                      "UTC (alerts print as they are sent)")
        delay = timedelta(seconds=settings.schedule.predict_delay_seconds)
        for i in range(1, ticks + 1):
            now = t0 + i * step + delay
            failures += wait_tick(candle_close_tick(engine, settings, now))
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


def print_report(report: DemoReport, console: Console) -> None:
    table = Table(title="signalcast demo summary")
    for col in ("asset", "target", "preds", "resolved", "expired", "hit rate", "always maj",
                "alerts"):
        table.add_column(col, justify="left" if col in ("asset", "target") else "right")

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.0%}"

    for s in report.targets:
        table.add_row(s.asset, s.target, str(s.predictions), str(s.resolved), str(s.expired),
                      pct(s.hit_rate), pct(s.majority_rate), str(s.alerts_sent))
    total = summary.TargetSummary("all", "", *(sum(getattr(s, f) for s in report.targets)
                                               for f in ("predictions", "resolved", "expired",
                                                         "hits", "alerts_sent", "ups")))
    table.add_row("[bold]all[/bold]", "", str(total.predictions), str(total.resolved),
                  str(total.expired), pct(total.hit_rate), pct(total.majority_rate),
                  str(total.alerts_sent))
    console.print("hit rate: the more likely direction came first (resolved outcomes); "
                  "always maj: always saying the majority direction on the same outcomes")
    console.print(table)
    console.print(f"{report.ticks} ticks, {report.task_runs} task runs "
                  f"({report.failed_tasks} failed) in {report.wall_seconds:.1f} s")
    console.print(f"rows: {report.counts}")
    console.print(f"database: {report.database}")
