"""``signalcast demo``: the whole pipeline on one machine with no external service.

Synthetic history -> training (train queue) -> hourly ticks on a simulated clock through the
scheduler's own job functions and the Celery tasks (ingest, predict, resolve, send alerts) on a
real in-process Celery worker -> alerts on the console (and Telegram when a token is set) ->
a summary table. Everything lands in a fresh SQLite file whose path is printed at the end.

The champion loop is shown on the first asset: every simulated day (24 ticks) its champions'
families are retrained, as ``schedule.retrain_cron`` does; each retrain enters as a challenger
and shadows the champion (one rolling challenger: its record is the union of its versions'
predictions). After the replay the promotion round runs as its task and the summary shows
champion against challengers on the same resolved outcomes with the decision and its
statistics. The demo's record is short, so it judges from ``DEMO_MIN_OUTCOMES`` shared outcomes
(production: ``promote_min_outcomes``, 300); the alpha spending still applies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich import box
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
from signalcast.tasks.enqueuer import train_signature, train_signatures
from signalcast.tasks.runner import task_runtime, wait_chain, wait_tick
from signalcast.tasks.tasks import evaluate_promotions, ingest

DEMO_MIN_OUTCOMES = 20  # shared resolved outcomes before the demo's promotion test decides


@dataclass
class DemoReport:
    database: Path
    wall_seconds: float
    ticks: int
    task_runs: int
    failed_tasks: int
    counts: dict[str, int] = field(default_factory=dict)
    targets: list[summary.TargetSummary] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)  # alert threshold per target


def demo_settings(database: Path, config: Path | None = None) -> Settings:
    """The configuration with the demo's own database, the embedded broker and synthetic data.

    The demo replays past candles on a simulated clock, so its signals are as old as the
    replay by the wall clock: the signal age limit is widened to cover it. Its promotion test
    decides from :data:`DEMO_MIN_OUTCOMES` shared outcomes (a few days of replay)."""
    settings = load_settings(config, database_url=f"sqlite:///{database}", broker_url=None)
    replay_age = datetime.now(UTC) - settings.file.data.start + timedelta(days=1)
    routing = settings.file.routing
    default = routing.default.model_copy(update={"promote_min_outcomes": DEMO_MIN_OUTCOMES})
    file = settings.file.model_copy(update={
        "routing": routing.model_copy(update={"default": default}),
        "data": settings.file.data.model_copy(update={"source": "synthetic"}),
        "alerts": settings.file.alerts.model_copy(update={
            "max_signal_age_seconds": int(replay_age.total_seconds())})})
    return Settings(file, settings.env, settings.source)


DEMO_CANDIDATES = ["hmm", "lightgbm"]
DEMO_LIGHTGBM = {"n_estimators": 100, "learning_rate": 0.1}


def quick_selection(settings: Settings) -> Settings:
    """The demo's fast path: unless the configuration lists ``models.candidates``, selection
    by evidence runs among :data:`DEMO_CANDIDATES` on 4 folds, LightGBM with 100 trees at twice
    the learning rate (a full selection among every built-in family costs about half a minute
    per (asset, target); the demo trains nine, and the 200 default trees were half of each
    training's time)."""
    if settings.file.models.candidates or settings.file.models.champion != "auto":
        return settings
    params = dict(settings.file.models.params)
    params["lightgbm"] = {**params.get("lightgbm", {}), **DEMO_LIGHTGBM}
    models = settings.file.models.model_copy(update={"candidates": list(DEMO_CANDIDATES),
                                                     "params": params})
    training = settings.file.training.model_copy(update={"folds": 4, "bootstrap": 500})
    file = settings.file.model_copy(update={"models": models, "training": training})
    return Settings(file, settings.env, settings.source)


def run_demo(workdir: Path = Path("signalcast-demo"), *, ticks: int = 72,
             history_days: int = 400, config: Path | None = None,
             console: Console | None = None, lifecycle: bool = True) -> DemoReport:
    """Run the demo; ``lifecycle=False`` skips the daily retrains and the promotion round (the
    pipeline alone)."""
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
            if lifecycle and i % 24 == 0 and i < ticks:
                failures += daily_retrain(engine, settings, now, console)
        comparisons = []
        if lifecycle:
            result = evaluate_promotions.delay((t0 + ticks * step + delay).isoformat())
            comparisons = result.get(timeout=300)["comparisons"]

    with session_scope(engine) as session:
        report = DemoReport(
            database=database, wall_seconds=time.perf_counter() - started, ticks=ticks,
            task_runs=sum(sum(s.values()) for s in summary.task_counts(session).values()),
            failed_tasks=len(failures), counts=summary.table_counts(session),
            targets=summary.target_summaries(session), comparisons=comparisons,
            thresholds={t.key: t.alert_threshold for t in settings.targets})
    print_report(report, console)
    for failure in failures[:5]:
        console.print(f"[red]failed task[/red] {failure}")
    set_settings(None)
    set_console_writer(None)
    return report


def daily_retrain(engine, settings: Settings, now: datetime, console: Console) -> list[str]:
    """Retrain the first asset's champion families (the daily cadence); each new version is a
    challenger that shadows its champion from the next tick."""
    from signalcast.lifecycle.admin import list_models

    asset = settings.assets[0].symbol
    champions = [m for m in list_models(engine, settings, asset) if m.role == "champion"]
    console.print(f"  daily retrain of {asset}: "
                  f"{', '.join(f'{m.target} {m.family}' for m in champions)}")
    results = [train_signature(asset, m.target, m.family, now).apply_async() for m in champions]
    return [f for f in (wait_chain(r) for r in results) if f]


def print_comparisons(comparisons: list[dict], console: Console) -> None:
    """Champion against each challenger on their shared resolved outcomes, with the decision."""
    table = Table(title="champion vs challengers (same resolved outcomes, 3-outcome Brier)")
    for col in ("asset target", "champion", "challenger", "n", "Brier", "Brier ch", "e-value",
                "needs", "decision"):
        table.add_column(col, justify="right" if col in ("n", "Brier", "Brier ch", "e-value",
                                                         "needs") else "left")
    for c in comparisons:
        s = c.get("stats") or {}

        def num(key: str, fmt: str = ".3f", stats=s) -> str:
            return "-" if stats.get(key) is None else format(stats[key], fmt)

        table.add_row(f"{c['asset'].split('/')[0]} {c['target']}", c["champion"],
                      c["challenger"], str(c["n_shared"]), num("brier_champion"),
                      num("brier_challenger"), num("e_value", ".3g"), num("threshold", ".3g"),
                      c["decision"])
    console.print(table)
    decided = [c for c in comparisons if c["decision"] != "too_few"]
    if decided:
        c = decided[0]
        s = c["stats"]
        console.print(
            f"promotion decision {c['asset']} {c['target']}: {c['challenger']} vs "
            f"{c['champion']} on {s['n']} shared outcomes: Brier "
            f"{s['brier_champion']:.4f} -> {s['brier_challenger']:.4f}, Diebold-Mariano "
            f"(Newey-West {s['lags']} lags, t with {s['df']:.1f} df) p={s['p_value']:.3g}; "
            f"always-valid e-value {s['e_value']:.3g} against {s['threshold']:.3g} "
            f"(checked daily, level {s['significance']:g} overall) -> {c['decision']}")
    elif not comparisons:
        console.print("no challenger in any line-up")


def silent_reasons(report: DemoReport) -> list[str]:
    """Why a target sent no signal alert: its served chances stayed below the threshold, or
    the skill gate held them. A quiet demo should say which, not leave the reader guessing."""
    lines = []
    for s in report.targets:
        threshold = report.thresholds.get(s.target)
        if s.alerts_sent or not s.predictions or threshold is None or s.top is None:
            continue
        if s.top < threshold:
            why = (f"its highest served chance, {s.top:.0%}, stayed below the threshold "
                   f"{threshold:.0%}")
        elif s.held:
            why = f"the skill gate held {s.held} of its {s.predictions} served predictions"
        else:
            why = "no chat receives signal alerts, or each was a repeat within its horizon"
        lines.append(f"no signal alert for {s.asset} {s.target}: {why}")
    return lines


def print_report(report: DemoReport, console: Console) -> None:
    table = Table(title="signalcast demo summary", box=box.SIMPLE_HEAD, padding=(0, 0))
    for col in ("series", "preds", "resolved", "expired", "hit", "maj", "top", "thr", "held",
                "alerts"):
        table.add_column(col, justify="left" if col == "series" else "right", no_wrap=True)

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.0%}"

    for s in report.targets:
        table.add_row(f"{s.asset.split('/')[0]} {s.target}", str(s.predictions), str(s.resolved),
                      str(s.expired), pct(s.hit_rate), pct(s.majority_rate), pct(s.top),
                      pct(report.thresholds.get(s.target)), str(s.held), str(s.alerts_sent))
    total = summary.TargetSummary("all", "", *(sum(getattr(s, f) for s in report.targets)
                                               for f in ("predictions", "resolved", "expired",
                                                         "hits", "alerts_sent", "ups")),
                                  held=sum(s.held for s in report.targets))
    table.add_row("[bold]all[/bold]", str(total.predictions), str(total.resolved),
                  str(total.expired), pct(total.hit_rate), pct(total.majority_rate), "", "",
                  str(total.held), str(total.alerts_sent))
    console.print("hit: the more likely direction came first (resolved outcomes); maj: always "
                  "saying the majority direction on the same outcomes; top: the highest served "
                  "chance of either direction, thr: the alert threshold; held: served "
                  "predictions whose alert the skill gate held; alerts: signal alerts sent")
    console.print(table)
    for line in silent_reasons(report):
        console.print(line)
    if report.comparisons:
        print_comparisons(report.comparisons, console)
    console.print(f"{report.ticks} ticks, {report.task_runs} task runs "
                  f"({report.failed_tasks} failed) in {report.wall_seconds:.1f} s")
    console.print(f"rows: {report.counts}")
    console.print(f"database: {report.database}")
