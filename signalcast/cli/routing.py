"""``signalcast routing ...``: see and change champion/challenger routing at run time.

Thin: parses, calls :mod:`signalcast.routing`, prints. Changes are stored in the database and
apply from the next prediction on every worker, without a restart. Champion changes (promote,
rollback) are ``signalcast models ...``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from signalcast.cli.common import ConfigOpt, cli_actor, console, settings_and_engine

if TYPE_CHECKING:
    from signalcast.config import Settings
routing_cli = typer.Typer(help="Champion/challenger routing: shadows, A/B split, promotion.",
                          no_args_is_help=True, pretty_exceptions_enable=False)

AssetArg = Annotated[str, typer.Argument(help="asset, e.g. BTC/USDT, or 'all'")]
TargetArg = Annotated[str, typer.Argument(help="target key, e.g. 2pct_72, or 'all'")]



def _pairs(settings: Settings, asset: str, target: str) -> list[tuple[str, str]]:
    assets = [a.symbol for a in settings.assets] if asset == "all" else [
        settings.asset(asset).symbol]
    targets = [t.key for t in settings.targets] if target == "all" else [
        settings.target(target).key]
    return [(a, t) for a in assets for t in targets]


@routing_cli.command("show")
def show(config: ConfigOpt = None) -> None:
    """Champion, shadows, A/B split, open breakers and fallbacks (7 days) per asset/target."""
    from signalcast.routing.overview import routing_overview

    settings, engine = settings_and_engine(config)
    table = Table(title="routing")
    for col in ("asset", "target", "champion", "shadows", "A/B", "promote", "breakers",
                "fallbacks"):
        table.add_column(col)
    for row in routing_overview(engine, settings, datetime.now(UTC)):
        ab = f"{row['ab_share']:.0%} {row['ab_challenger']}" if row["ab_challenger"] else "-"
        table.add_row(row["asset"], row["target"] + (" *" if row["overridden"] else ""),
                      row["champion"] or "-", ", ".join(row["shadows"]) or "-", ab,
                      row["promote_mode"], ", ".join(row["breakers"]) or "-",
                      str(row["fallbacks"]))
    console.print(table)
    console.print("* changed at run time (signalcast routing reset ASSET TARGET reverts)")


@routing_cli.command("shadow")
def shadow(asset: AssetArg, target: TargetArg,
           families: Annotated[list[str] | None, typer.Argument(
               help="families whose newest version predicts in shadow")] = None,
           none: Annotated[bool, typer.Option("--none", help="no shadows")] = False,
           config: ConfigOpt = None) -> None:
    """Set the shadow challenger families of ASSET TARGET (no families: back to the config)."""
    from signalcast.routing.overrides import set_override

    settings, engine = settings_and_engine(config)
    shadows = [] if none else (families or None)
    for a, t in _pairs(settings, asset, target):
        policy = set_override(engine, settings, a, t, actor=cli_actor(), shadows=shadows)
        console.print(f"{a} {t}: shadows {', '.join(policy.shadows) or 'none'}")


@routing_cli.command("ab")
def ab(asset: AssetArg, target: TargetArg,
       share: Annotated[float, typer.Option(min=0, max=1, help="share served by the "
                                            "challenger, e.g. 0.1")] = 0.0,
       challenger: Annotated[str | None, typer.Option(help="challenger family")] = None,
       config: ConfigOpt = None) -> None:
    """Serve SHARE of ASSET TARGET's candles with CHALLENGER's newest version (0 stops)."""
    from signalcast.routing.overrides import KEEP, set_override

    settings, engine = settings_and_engine(config)
    for a, t in _pairs(settings, asset, target):
        policy = set_override(engine, settings, a, t, actor=cli_actor(), ab_share=share,
                              ab_challenger=challenger if challenger is not None else KEEP)
        console.print(f"{a} {t}: A/B {policy.ab_share:.0%} "
                      f"{policy.ab_challenger or '(no challenger)'}")


@routing_cli.command("reset")
def reset(asset: AssetArg, target: TargetArg, config: ConfigOpt = None) -> None:
    """Drop run-time routing changes of ASSET TARGET: the configuration applies again."""
    from signalcast.routing.overrides import clear_override

    settings, engine = settings_and_engine(config)
    for a, t in _pairs(settings, asset, target):
        removed = clear_override(engine, settings, a, t)
        console.print(f"{a} {t}: {'back to the configuration' if removed else 'unchanged'}")


@routing_cli.command("promote-check")
def promote_check(
        promote: Annotated[bool, typer.Option(
            "--promote", help="promote qualifying challengers now (else only show)")] = False,
        config: ConfigOpt = None) -> None:
    """Compare challengers with champions on shared resolved outcomes (three-outcome Brier;
    Diebold-Mariano with Newey-West lags = 3 x horizon, decided by an always-valid e-value
    against 1 / level)."""
    from signalcast.db.engine import session_scope
    from signalcast.lifecycle.promote import evaluate_promotions
    from signalcast.routing.promotion import compare_target

    settings, engine = settings_and_engine(config)
    now = datetime.now(UTC)
    if promote:
        results = evaluate_promotions(engine, settings, now, actor=cli_actor(), mode="auto")
    else:
        with session_scope(engine, readonly=True) as session:
            results = [c for a in settings.assets for t in settings.targets
                       for c in compare_target(session, settings, a.symbol, t.key, now)]
    table = Table(title="champion vs challengers (shared resolved outcomes)")
    for col in ("asset", "target", "champion", "challenger", "n", "Brier", "AUC", "e-value",
                "needs", "decision"):
        table.add_column(col)
    for c in results:
        s = c.stats
        brier = f"{s['brier_champion']:.4f} -> {s['brier_challenger']:.4f}" if s else "-"
        auc = (f"{s['auc_champion']:.3f} -> {s['auc_challenger']:.3f}"
               if s and s["auc_champion"] is not None else "-")
        table.add_row(c.asset, c.target, c.champion, c.challenger, str(c.n_shared), brier, auc,
                      f"{s['e_value']:.3g}" if s else "-",
                      f"{s['threshold']:.3g}" if s else "-", c.decision)
    console.print(table)
