"""The pipeline from the shell: ``demo``, ``replay``, ``tick``, ``train``, ``predict`` and
``ingest``. Each command parses, calls a use case or enqueues tasks, and prints; heavy
libraries are imported inside the command that needs them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from signalcast.cli.common import ConfigOpt, console, load_settings, parse_time
from signalcast.core.errors import SignalcastError

if TYPE_CHECKING:
    from signalcast.config import Settings


def demo(
    ticks: Annotated[int, typer.Option(min=1, help="hourly ticks to replay")] = 72,
    workdir: Annotated[Path, typer.Option(help="where the demo database goes")] = Path(
        "signalcast-demo"),
    history_days: Annotated[int, typer.Option(min=60, help="days of history")] = 400,
    config: ConfigOpt = None,
) -> None:
    """Run the whole pipeline on this machine, no external service needed."""
    from signalcast.cli.demo import run_demo

    run_demo(workdir, ticks=ticks, history_days=history_days, config=config, console=console)


def replay(
    start: Annotated[str, typer.Option("--from", help="first tick time (ISO, UTC)")],
    ticks: Annotated[int, typer.Option(min=1, help="ticks to replay")] = 48,
    train: Annotated[bool, typer.Option(help="train champions at the start first")] = True,
    through_workers: Annotated[bool, typer.Option(
        "--through-workers",
        help="publish each tick to Celery workers (an embedded one without a broker URL) "
             "instead of running its tasks' pipeline steps in this process; same results, "
             "~0.5 s more per tick")] = False,
    processes: Annotated[int, typer.Option(
        min=1, help="processes for the in-process replay: the assets split among them, ticks "
                    "in lockstep (same results; up to one asset per process)")] = 1,
    config: ConfigOpt = None,
) -> None:
    """Replay the tick loop over stored history (e.g. a loaded CSV) on a simulated clock."""
    from signalcast.config import Settings
    from signalcast.core.timeframes import timeframe_to_timedelta
    from signalcast.db.engine import init_db
    from signalcast.tasks.runner import task_runtime

    settings = load_settings(config)
    settings = Settings(settings.file.model_copy(update={"data": settings.file.data.model_copy(
        update={"source": "stored"})}), settings.env, settings.source)
    engine = init_db(settings.env.database_url)
    t0 = parse_time(start)
    step = timeframe_to_timedelta(settings.assets[0].timeframe)
    run_id = f"replay-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    times = [t0 + i * step + timedelta(seconds=settings.schedule.predict_delay_seconds)
             for i in range(ticks)]
    if through_workers and processes > 1:
        console.print("[red]error:[/red] --processes is for the in-process replay; with "
                      "--through-workers, start more workers instead")
        raise typer.Exit(2)
    if through_workers:
        from signalcast.scheduler.jobs import candle_close_tick
        from signalcast.tasks.runner import wait_tick

        with task_runtime(settings):
            if train:
                _run_training(settings, t0, None, None, None)
            _replay_ticks(times, lambda now: wait_tick(
                candle_close_tick(engine, settings, now, job=run_id)))
    else:
        from signalcast.config.runtime import set_settings
        from signalcast.ops.replay import ReplayRunner
        from signalcast.ops.replay_parallel import ParallelReplay

        if train:  # trainings still go through the train queue (progress, parallel workers)
            with task_runtime(settings):
                _run_training(settings, t0, None, None, None)
        set_settings(settings)
        if processes > 1:
            with ParallelReplay(engine, settings, processes=processes, job=run_id) as runner:
                _replay_ticks(times, lambda now: runner.tick(now).failures)
        else:
            runner = ReplayRunner(engine, settings, job=run_id)
            _replay_ticks(times, lambda now: runner.tick(now).failures)
    from signalcast.cli.admin import print_status

    print_status(settings, brief=True)


def _replay_ticks(times: list[datetime], tick) -> None:
    """Run ``tick(now)`` (its failures) for every time, with progress and failures shown."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("replay", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               "{task.description}")
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("", total=len(times))
        for now in times:
            for failure in tick(now):
                progress.console.print(f"[red]tick {now:%Y-%m-%d %H:%M} failed[/red]: "
                                       f"{failure}")
            progress.update(task, advance=1, description=f"{now:%Y-%m-%d %H:%M} UTC")


def _run_training(settings: Settings, now: datetime, assets, targets, families) -> None:
    from signalcast.cli.progress import train_with_progress
    from signalcast.tasks.enqueuer import train_signatures

    failures: list[str] = []
    signatures = train_signatures(settings, now, assets=assets, targets=targets,
                                  families=families)
    train_with_progress(signatures, console, failures)
    for failure in failures:
        console.print(f"[red]training failed[/red]: {failure}")
    if failures:
        raise typer.Exit(1)


def train(
    asset: Annotated[str | None, typer.Argument(help="e.g. BTC/USDT")] = None,
    target: Annotated[str | None, typer.Argument(help="e.g. 2pct_72")] = None,
    family: Annotated[list[str] | None, typer.Option("--family", "-f")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every asset and target")] = False,
    at: Annotated[str | None, typer.Option(help="train as of this time (ISO, UTC)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Train models (through the train queue) and show progress."""
    from signalcast.db.engine import init_db
    from signalcast.models.registry import family_class
    from signalcast.tasks.runner import task_runtime

    settings = load_settings(config)
    if asset is None and not all_:
        raise typer.BadParameter("name an ASSET or pass --all")
    assets = None if all_ else [settings.asset(asset).symbol]
    targets = None if target is None else [settings.target(target).key]
    for name in family or []:
        family_class(name)
    init_db(settings.env.database_url)
    with task_runtime(settings):
        _run_training(settings, parse_time(at), assets, targets, family or None)


def predict(
    asset: Annotated[str, typer.Argument(help="e.g. BTC/USDT")],
    at: Annotated[str | None, typer.Option(help="candle open time (default: newest stored)")]
    = None,
    config: ConfigOpt = None,
) -> None:
    """Predict every target of ASSET at a stored candle and print the probabilities."""
    from sqlmodel import select

    from signalcast.db.candles import last_candle_time
    from signalcast.db.engine import init_db, session_scope
    from signalcast.db.tables import ModelVersion, Prediction
    from signalcast.pipeline.predict import predict_asset

    settings = load_settings(config)
    cfg = settings.asset(asset)
    engine = init_db(settings.env.database_url)
    with session_scope(engine) as session:
        when = parse_time(at) if at else last_candle_time(session, cfg.symbol, cfg.timeframe)
        if when is None:
            raise SignalcastError(f"{cfg.symbol}: no candles stored; run `signalcast ingest`")
        result = predict_asset(session, settings, cfg.symbol, when)
        rows = session.exec(select(Prediction, ModelVersion).join(ModelVersion).where(
            Prediction.asset == cfg.symbol, Prediction.candle_time == when)).all()
    table = Table(title=f"{cfg.symbol} at close of {when:%Y-%m-%d %H:%M} UTC")
    for col in ("target", "P(up first)", "model"):
        table.add_column(col)
    for pred, version in rows:
        table.add_row(pred.target, f"{pred.prob_up:.1%}", f"{version.family} v{version.version}")
    console.print(table)
    for key, why in result.skipped.items():
        console.print(f"[yellow]{key}[/yellow]: {why}")


def ingest(
    file: Annotated[Path | None, typer.Option("--file", help="CSV or Parquet candles")] = None,
    asset: Annotated[str | None, typer.Option(help="asset the file holds, e.g. BTC/USDT")]
    = None,
    repair: Annotated[bool, typer.Option(help="repair what can be repaired, with a log")]
    = False,
    overwrite: Annotated[bool, typer.Option(
        help="let --file change stored candles whose values differ (refused otherwise, with "
             "the count and the first one)")] = False,
    backfill: Annotated[int | None, typer.Option(
        "--backfill", min=1, metavar="DAYS",
        help="also fetch the last DAYS of history from the configured source (resumes where "
             "an earlier run stopped; asks again for recorded gaps)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Store closed candles: from a file (--file, --asset), else from the configured source."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from signalcast.data import load_candles
    from signalcast.db.candles import store_candles
    from signalcast.db.engine import init_db, session_scope
    from signalcast.pipeline.ingest import IngestProgress, ingest_asset

    settings = load_settings(config)
    if file is not None and backfill is not None:
        raise typer.BadParameter("--backfill fetches from the configured source; "
                                 "it cannot be combined with --file")
    if backfill is not None and settings.data.source == "stored":
        raise typer.BadParameter("--backfill needs data.source 'exchange' (or 'synthetic'); "
                                 "with 'stored', load history with --file")
    engine = init_db(settings.env.database_url)
    now = datetime.now(UTC)
    if file is not None:
        if asset is None:
            raise typer.BadParameter("--file needs --asset (which asset the file holds)")
        cfg = settings.asset(asset)
        candles = load_candles(file, timeframe=cfg.timeframe, repair=repair,
                               calendar=cfg.calendar)
        with session_scope(engine) as session:
            stored = store_candles(session, cfg.symbol, cfg.timeframe, candles, now,
                                   overwrite=overwrite)
        console.print(f"{cfg.symbol}: {stored} closed candles stored from {file} "
                      f"({candles.index[0]:%Y-%m-%d %H:%M} .. {candles.index[-1]:%Y-%m-%d %H:%M})")
        return
    failed = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        for cfg in settings.assets if asset is None else [settings.asset(asset)]:
            task = bar.add_task(f"{cfg.symbol}: connecting", total=None)

            def show(p: IngestProgress, task=task) -> None:
                through = f" through {p.through:%Y-%m-%d %H:%M}" if p.through else ""
                bar.update(task, completed=p.stored, total=p.wanted or None,
                           description=f"{p.asset}: candles{through}")

            try:
                with session_scope(engine) as session:
                    result = ingest_asset(session, settings, cfg.symbol, now,
                                          backfill_days=backfill, progress=show)
            except SignalcastError as exc:
                bar.remove_task(task)
                console.print(f"[red]{escape(cfg.symbol)}[/red]: {escape(str(exc))}",
                              highlight=False)
                failed.append(cfg.symbol)
                continue
            bar.remove_task(task)
            extra = f", {result['calls']} exchange call(s)" if "calls" in result else ""
            if result.get("dropped"):
                extra += f", {result['dropped']} invalid candle(s) dropped"
            console.print(f"{cfg.symbol}: {result['stored']} candles stored, newest "
                          f"{result['last']}{extra}")
            for gap in result.get("gaps", []):
                console.print(f"[yellow]{escape(cfg.symbol)}: open gap {gap['first']} .. "
                              f"{gap['last']} ({gap['missing']} candles): "
                              f"{escape(gap['reason'])}[/yellow]", highlight=False)
    if failed:
        raise typer.Exit(2)


def tick(
    at: Annotated[str | None, typer.Option(help="tick time (ISO, UTC; default now)")] = None,
    wait: Annotated[bool, typer.Option(help="wait for the tick's tasks to finish")] = True,
    redo: Annotated[bool, typer.Option(
        help="enqueue the tick again under fresh task ids even if scheduled_enqueues records "
             "it (work lost with the broker's data); idempotent")] = False,
    config: ConfigOpt = None,
) -> None:
    """Enqueue one candle-close tick now, exactly as the scheduler would (needs workers)."""
    from signalcast.db.engine import init_db
    from signalcast.scheduler.jobs import candle_close_tick
    from signalcast.scheduler.reconcile import redo_tick
    from signalcast.tasks.runner import task_runtime, wait_tick

    settings = load_settings(config)
    engine = init_db(settings.env.database_url)
    with task_runtime(settings):
        enqueue = redo_tick if redo else candle_close_tick
        results = enqueue(engine, settings, parse_time(at))
        again = " again" if redo else ""
        batches = (f" in {len(results)} batch(es)" if len(results) != results.assets else "")
        console.print(f"enqueued {results.assets} asset tick(s){batches}{again}")
        if not results and not redo:
            console.print("already enqueued for this time; pass --redo to enqueue it again")
        failures = wait_tick(results) if wait else []
    for failure in failures:
        console.print(f"[red]failed[/red]: {failure}")
    if failures:
        raise typer.Exit(1)
