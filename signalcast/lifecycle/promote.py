"""Act on the promotion test (:mod:`signalcast.routing.promotion`) for every configured
(asset, target).

``promote_mode: auto`` (default) promotes the best qualifying challenger through
:func:`signalcast.lifecycle.admin.promote_version` (audit row and ``model`` alert, both carrying
the test statistics); ``command`` only notifies, once per pair, and an operator promotes. The
promotion is fenced by the champion it was tested against: when that champion no longer serves
(an operator or another round changed it), nothing is decided (``fenced``, logged) and the next
round tests again. Every comparison with enough outcomes is recorded in ``promotion_checks``;
the same outcomes checked again add nothing, so running the round twice changes nothing. The
round runs as the ``signalcast.evaluate_promotions`` task on the train queue; the scheduler
only enqueues it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from signalcast.alerts.rules import queue_model_event_alert
from signalcast.config import Settings
from signalcast.core.errors import SignalcastError
from signalcast.core.timeframes import utc
from signalcast.db.engine import session_scope
from signalcast.db.tables import PromotionCheck
from signalcast.db.upsert import insert_ignore
from signalcast.lifecycle.admin import ChampionChanged, promote_version
from signalcast.routing.promotion import (
    FENCED,
    PROMOTED,
    QUALIFIED,
    TOO_FEW,
    Comparison,
    compare_target,
)

log = logging.getLogger(__name__)


def promotion_round(engine: Engine, settings: Settings, now: datetime) -> list[dict]:
    """One promotion round over every configured (asset, target); JSON-ready results."""
    return [c.to_dict() for c in evaluate_promotions(engine, settings, now)]


def evaluate_promotions(engine: Engine, settings: Settings, now: datetime, *,
                        actor: str = "promotion", mode: str | None = None) -> list[Comparison]:
    """Compare, record and act for every configured (asset, target); see the module docstring.
    ``mode`` overrides each target's ``promote_mode`` (``auto`` promotes the best qualifying
    challenger; ``command`` notifies)."""
    now = utc(now)
    results: list[Comparison] = []
    for asset in settings.assets:
        for target in settings.targets:
            with session_scope(engine, readonly=True) as session:
                comparisons = compare_target(session, settings, asset.symbol, target.key, now)
            qualified = sorted((c for c in comparisons if c.decision == QUALIFIED),
                               key=lambda c: c.stats["mean_diff"])
            policy_mode = mode or settings.routing.policy(target.key).promote_mode
            if qualified and policy_mode == "auto":
                best = qualified[0]
                try:
                    promote_version(engine, settings, asset.symbol, target.key,
                                    ":".join(best.challenger.rsplit(" v", 1)), actor,
                                    _reason(best), expect_champion_id=best.champion_id,
                                    test=best.stats)
                except ChampionChanged as exc:  # fenced: the tested champion no longer serves
                    best.decision = FENCED
                    best.stats = {**best.stats, "fenced": str(exc)}
                    log.warning("%s", exc)
                except SignalcastError as exc:  # e.g. an operator promoted it meanwhile
                    log.warning("%s %s: cannot promote %s: %s", asset.symbol, target.key,
                                best.challenger, exc)
                else:
                    best.decision = PROMOTED
                    log.info("%s %s: promoted %s over %s (e-value %.4g)", asset.symbol,
                             target.key, best.challenger, best.champion, best.stats["e_value"])
            with session_scope(engine) as session:
                for item in comparisons:
                    if item.decision != TOO_FEW:
                        _record(session, settings, item, now, notify=policy_mode != "auto")
            results += comparisons
    return results


def _reason(item: Comparison) -> str:
    s = item.stats
    return (f"Brier {s['brier_champion']:.4f} -> {s['brier_challenger']:.4f} over "
            f"{s['n']} shared resolved outcomes (three-outcome Brier); always-valid test: "
            f"e-value {s['e_value']:.3g} >= {s['threshold']:.3g} (1 / level {s['level']:.3g}; "
            f"checked daily, false promotions at most {s['significance']:g} overall), "
            f"Diebold-Mariano (Newey-West, {s['lags']} lags) p={s['p_value']:.3g} at this "
            f"sample size, margin {s['margin']:g}")


def _record(session: Session, settings: Settings, item: Comparison, now: datetime, *,
            notify: bool) -> None:
    """Store the comparison once per (pair, sample size); tell the operator the first time a
    challenger qualifies (``command`` mode: they decide)."""
    first_time = item.decision == QUALIFIED and session.exec(
        select(PromotionCheck.id).where(
            PromotionCheck.champion_version_id == item.champion_id,
            PromotionCheck.challenger_version_id == item.challenger_id,
            PromotionCheck.decision == QUALIFIED)).first() is None
    inserted = insert_ignore(session, PromotionCheck, {
        "asset": item.asset, "target": item.target, "champion_version_id": item.champion_id,
        "challenger_version_id": item.challenger_id, "n_shared": item.n_shared,
        "decision": item.decision, "stats": item.stats},
        keys=["champion_version_id", "challenger_version_id", "n_shared"])
    if inserted and first_time and notify:
        queue_model_event_alert(
            session, settings, "promotion_ready", item.asset, item.target,
            to_label=item.challenger, from_label=item.champion, actor="promotion",
            reason=_reason(item) + "; promote it with /promote", stats=item.stats, at=now)
