"""Progress bars for work a command waits on (trainings through the train queue)."""

from __future__ import annotations

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
                r = result.result
                auc = r["metrics"]["auc"]
                progress.update(bar, description=(
                    f"{r['asset']} {r['target']} {r['family']} v{r['version']} "
                    f"AUC {auc:.3f} Brier {r['metrics']['brier']:.3f}"))
            time.sleep(0.05)
