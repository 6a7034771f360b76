"""What a dangerous command would do, checked before its Confirm button is shown: a wrong
argument is answered at once (usage line and the valid choices), not after the press, and the
question names the versions involved. Read-only; the command re-checks everything when it
runs (another admin may have changed the champion in between)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from signalcast.bot.render import escape
from signalcast.config import Settings
from signalcast.core.errors import SignalcastError, UnknownNameError
from signalcast.lifecycle import admin as model_admin
from signalcast.lifecycle.admin import _SPEC as VERSION_SPEC  # the grammar promote accepts


def promotion(engine: Engine, settings: Settings, asset: str, target: str, spec: str,
              reason: str) -> str:
    """The question of ``/promote``; raises what ``promote_version`` would for bad names."""
    symbol, key = settings.asset(asset).symbol, settings.target(target).key
    versions = model_admin.list_models(engine, settings, symbol, key)
    usable = [v for v in versions if v.has_artifact]
    match = VERSION_SPEC.fullmatch(spec.strip())
    found = [] if match is None else [
        v for v in usable if v.version == int(match["number"])
        and (match["family"] is None or v.family == match["family"])]
    if len(found) != 1:
        raise UnknownNameError(f"version of {symbol} {key}", spec,
                               [f"{v.family}:{v.version}" for v in usable])
    [chosen] = found
    current = next((v for v in versions if v.role == "champion"), None)
    if current is not None and current.id == chosen.id:
        raise SignalcastError(f"{symbol} {key}: {chosen.label} is already the champion")
    was = current.label if current is not None else "none"
    why = f"\nReason: {escape(reason)}" if reason else ""
    return (f"<b>Promote {escape(symbol)} {escape(key)}?</b>\n{escape(chosen.label)} "
            f"({escape(chosen.role)}) becomes the champion, replacing {escape(was)}; "
            f"alerts use it from the next prediction.{why}")


def rollback(engine: Engine, settings: Settings, asset: str, target: str, reason: str) -> str:
    """The question of ``/rollback``."""
    symbol, key = settings.asset(asset).symbol, settings.target(target).key
    current = next((v for v in model_admin.list_models(engine, settings, symbol, key)
                    if v.role == "champion"), None)
    if current is None:
        raise SignalcastError(f"{symbol} {key} has no champion to roll back; train one")
    why = f"\nReason: {escape(reason)}" if reason else ""
    return (f"<b>Roll back {escape(symbol)} {escape(key)}?</b>\n{escape(current.label)} "
            "stops being the champion; the version it replaced takes the role back."
            f"{why}")


def retrain(settings: Settings, asset: str, target: str | None,
            family: str | None) -> str | None:
    """The question of a ``/retrain`` of several targets; None when it trains one target
    (no confirmation needed). Names are checked by ``start_retrain`` either way."""
    if target is not None:
        return None
    symbol = settings.asset(asset).symbol
    keys = [t.key for t in settings.targets]
    if len(keys) < 2:
        return None
    name = family or settings.models.champion
    return (f"<b>Retrain {escape(symbol)}: all {len(keys)} targets?</b>\n"
            f"{len(keys)} {escape(name)} train tasks ({escape(', '.join(keys))}) go to the "
            "train queue; each new version enters as a challenger (a target without a "
            "champion gets its first one).")
