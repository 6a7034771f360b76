"""``signalcast models``: the registered families, and champion administration (list,
promote, roll back, audit history) through the same service functions as the bot's /models,
/promote and /rollback (:mod:`signalcast.lifecycle.admin`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from signalcast.cli.common import ConfigOpt, cli_actor, console, settings_and_engine

models_cli = typer.Typer(help="Model families and champions: list, promote, roll back, history.",
                         no_args_is_help=True, pretty_exceptions_enable=False)


@models_cli.callback()
def _models() -> None:
    """Model families (built-in and plugins) and champions."""


@models_cli.command("families")
def families() -> None:
    """List the registered model families: name, source (built-in or the plugin's
    distribution) and import path. Family modules are not imported."""
    from signalcast.models.registry import describe_families

    rows = [("FAMILY", "SOURCE", "IMPORT PATH")]
    rows += [(name, source, path) for name, path, source in describe_families()]
    name_width, source_width = (max(len(row[i]) for row in rows) for i in (0, 1))
    for name, source, path in rows:
        typer.echo(f"{name:<{name_width}}  {source:<{source_width}}  {path}")


ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="why (kept in the audit log)")]



def held_out_figures(metrics: dict) -> tuple[str, str]:
    """(figures, alerts): the held-out walk-forward figures beside their benchmarks (Brier /
    the causal base rate's, Brier skill with its lower bound, AUC / the label-shift null, hit
    rate / always the majority direction) and whether its alerts go out. A version trained
    before walk-forward evidence shows none: its old figures were measured on its own
    calibration rows."""
    if "gate_open" not in metrics:
        return "no held-out figures (retrain)", "held"

    def num(key: str, fmt: str) -> str:
        value = metrics.get(key)
        return "-" if value is None else format(value, fmt)

    figures = (f"Brier {num('brier', '.3f')}/base {num('brier_ref', '.3f')} "
               f"skill {num('brier_skill', '+.3f')} (low {num('skill_lower', '+.3f')})\n"
               f"AUC {num('auc', '.3f')}/null {num('auc_null_mean', '.2f')}"
               f"+-{num('auc_null_sd', '.2f')} hit {num('hit_rate', '.0%')}/majority "
               f"{num('majority_rate', '.0%')}")
    return figures, "open" if metrics["gate_open"] else "held"


@models_cli.command("list")
def list_models(asset: Annotated[str | None, typer.Argument(help="e.g. BTC/USDT")] = None,
                config: ConfigOpt = None) -> None:
    """Model versions per asset and target, the champion first, with their held-out
    (walk-forward) figures beside their benchmarks and whether their signal alerts go out
    (the skill gate)."""
    from signalcast.lifecycle.admin import list_models as service

    settings, engine = settings_and_engine(config)
    table = Table(title="models: held-out walk-forward figures vs benchmarks")
    for col in ("asset", "target", "version", "role", "figures", "alerts"):
        table.add_column(col, no_wrap=col != "figures")
    for m in service(engine, settings, asset):
        table.add_row(m.asset, m.target, f"{m.family}:{m.version}",
                      m.role if m.has_artifact else f"{m.role} (purged)",
                      *held_out_figures(m.metrics))
    console.print(table)


@models_cli.command("promote")
def promote(asset: str, target: str,
            version: Annotated[str, typer.Argument(help="e.g. lightgbm:3, or 3")],
            reason: ReasonOpt = "", config: ConfigOpt = None) -> None:
    """Make VERSION the champion of ASSET TARGET (audited)."""
    from signalcast.lifecycle.admin import promote_version

    settings, engine = settings_and_engine(config)
    event = promote_version(engine, settings, asset, target, version, actor=cli_actor(),
                            reason=reason)
    console.print(f"{event.asset} {event.target}: {event.to_label} is the champion "
                  f"(was {event.from_label or 'none'}); model event #{event.id}")


@models_cli.command("rollback")
def rollback(asset: str, target: str, reason: ReasonOpt = "", config: ConfigOpt = None) -> None:
    """Give the champion role of ASSET TARGET back to the version it replaced (audited)."""
    from signalcast.lifecycle.admin import rollback as service

    settings, engine = settings_and_engine(config)
    event = service(engine, settings, asset, target, actor=cli_actor(), reason=reason)
    console.print(f"{event.asset} {event.target}: rolled back to {event.to_label} "
                  f"(from {event.from_label}); model event #{event.id}")


@models_cli.command("history")
def history(asset: str, target: str,
            limit: Annotated[int, typer.Option(min=1, help="newest events shown")] = 20,
            config: ConfigOpt = None) -> None:
    """The audit log of ASSET TARGET: every champion change, newest first."""
    from signalcast.lifecycle.admin import history as service

    settings, engine = settings_and_engine(config)
    table = Table(title=f"model events {asset} {target}")
    for col in ("#", "when (UTC)", "event", "change", "by", "reason"):
        table.add_column(col, no_wrap=col in ("#", "event"))
    for e in service(engine, settings, asset, target, limit):
        table.add_row(str(e.id), f"{e.created_at:%Y-%m-%d %H:%M}", e.event,
                      f"{e.from_label or '-'} -> {e.to_label or '-'}", e.actor, e.reason)
    console.print(table)
