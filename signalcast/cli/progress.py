"""Progress bars for work a command waits on (trainings through the train queue)."""

from __future__ import annotations

import math
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


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
                progress.update(bar, description=describe_training(result.result))
            time.sleep(0.05)


def describe_training(result: dict) -> str:
    """One finished training as a line: ``BTC/USDT 2pct_72 lightgbm v3 AUC 0.612 Brier 0.231``.

    A metric the training could not compute (e.g. AUC when the held-out rows hold one class
    only, as with a short history) is shown as "n/a" instead of failing the command."""
    metrics = result.get("metrics") or {}
    return (f"{result.get('asset')} {result.get('target')} {result.get('family')} "
            f"v{result.get('version')} AUC {_metric(metrics.get('auc'))} "
            f"Brier {_metric(metrics.get('brier'))}")


def _metric(value: object) -> str:
    if isinstance(value, int | float) and math.isfinite(value):
        return f"{value:.3f}"
    return "n/a"
