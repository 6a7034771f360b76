"""Run-time routing changes: shadows and the A/B split of one (asset, target), without a restart.

The configuration (``routing``) says how each target is served; an operator can change the
shadows, the A/B share and the A/B challenger of one (asset, target) at run time. The change is a
row of ``routing_overrides``, read by the router on every prediction, so every worker process
sees it on its next candle. The CLI (``signalcast routing ...``) and the bot call these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from signalcast.config import Settings
from signalcast.config.settings import RoutePolicy
from signalcast.core.errors import ConfigError
from signalcast.db.engine import session_scope
from signalcast.db.tables import RoutingOverride, utcnow
from signalcast.db.upsert import upsert

_FIELDS = ("shadows", "ab_share", "ab_challenger")
KEEP: Any = object()  # "leave this setting as it is"


def apply_override(policy: RoutePolicy, override: RoutingOverride | None) -> RoutePolicy:
    """``policy`` with the values ``override`` sets (None values keep the configured ones)."""
    if override is None:
        return policy
    changes = {f: getattr(override, f) for f in _FIELDS if getattr(override, f) is not None}
    return policy.model_copy(update=changes) if changes else policy


def overrides_for(session: Session, asset: str) -> dict[str, RoutingOverride]:
    """target -> override row, for one asset (one query, on the hot path)."""
    return overrides_of(session, [asset]).get(asset, {})


def overrides_of(session: Session, assets: list[str]) -> dict[str, dict[str, RoutingOverride]]:
    """asset -> target -> override row, for several assets in one query."""
    out: dict[str, dict[str, RoutingOverride]] = {}
    for row in session.exec(select(RoutingOverride).where(
            col(RoutingOverride.asset).in_(assets))).all():
        out.setdefault(row.asset, {})[row.target] = row
    return out


def effective_policy(session: Session, settings: Settings, asset: str,
                     target: str) -> RoutePolicy:
    """The configured policy of ``target`` with the run-time override of (asset, target)."""
    return apply_override(settings.routing.policy(target),
                          session.get(RoutingOverride, (asset, target)))


def _validated(policy: RoutePolicy, changes: dict[str, Any]) -> RoutePolicy:
    try:
        merged = RoutePolicy.model_validate({**policy.model_dump(), **changes})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"routing change refused: {problems}") from None
    if merged.ab_share > 0 and merged.ab_challenger is None:
        raise ConfigError(f"routing change refused: ab_share {merged.ab_share:g} needs an A/B "
                          "challenger family")
    return merged


def set_override(engine: Engine, settings: Settings, asset: str, target: str, *, actor: str,
                 shadows: Sequence[str] | None = KEEP, ab_share: float | None = KEEP,
                 ab_challenger: str | None = KEEP) -> RoutePolicy:
    """Change the routing of (asset, target) from the next prediction on; returns the policy
    that now applies. ``KEEP`` leaves a setting as it is, None reverts it to the configured
    value. Family names are checked against the registry."""
    symbol, key = settings.asset(asset).symbol, settings.target(target).key
    given = {"shadows": None if shadows in (KEEP, None) else list(shadows),
             "ab_share": None if ab_share in (KEEP, None) else float(ab_share),
             "ab_challenger": None if ab_challenger is KEEP else ab_challenger}
    with session_scope(engine) as session:
        row = session.get(RoutingOverride, (symbol, key))
        stored = {f: None if row is None else getattr(row, f) for f in _FIELDS}
        for name, value in (("shadows", shadows), ("ab_share", ab_share),
                            ("ab_challenger", ab_challenger)):
            if value is not KEEP:
                stored[name] = given[name]
        configured = settings.routing.policy(key)
        policy = _validated(configured, {k: v for k, v in stored.items() if v is not None})
        upsert(session, RoutingOverride, [{"asset": symbol, "target": key, **stored,
                                           "updated_at": utcnow(), "updated_by": actor[:80]}],
               keys=["asset", "target"], update=[*_FIELDS, "updated_at", "updated_by"])
    return policy


def clear_override(engine: Engine, settings: Settings, asset: str, target: str) -> bool:
    """Back to the configured routing of (asset, target); True when an override was removed."""
    symbol, key = settings.asset(asset).symbol, settings.target(target).key
    with session_scope(engine) as session:
        row = session.get(RoutingOverride, (symbol, key))
        if row is None:
            return False
        session.delete(row)
    return True
