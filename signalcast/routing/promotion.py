"""Promote a challenger once live outcomes show it is better than the champion.

For each (asset, target), every routed challenger (shadow or A/B) is compared with the champion
on the candles both predicted and whose outcome resolved UP or DOWN (expired outcomes carry no
direction). Nothing is decided before ``promote_min_outcomes`` shared outcomes.

The test: Diebold-Mariano on the Brier loss differences ``d_t = (p_chal - y)^2 - (p_champ -
y)^2``. Outcomes of neighbouring candles overlap (each looks ``horizon`` candles ahead), so the
variance of the mean difference is the Newey-West long-run variance with Bartlett weights and
``lags = 2 * horizon`` (ML_NOTES.md: plain tests overstate confidence here). One-sided, against
the margin: H0 ``E[d] >= -margin`` vs H1 ``E[d] < -margin`` (the challenger's Brier is lower by
more than ``promote_margin``), statistic ``(mean(d) + margin) / se``. The challenger qualifies
when ``p < promote_significance``.

Small samples: with a 72-candle horizon, 300 outcomes hold only a handful of independent
stretches, and the textbook test (``lags = horizon``, normal or t(n-1) reference) rejected a
true null 10-17% of the time at a nominal 5% (simulated overlapping-outcome losses). Two
fixed-b corrections bring that to 6-8%: the Bartlett estimate is divided by ``1 - b`` (its bias
with ``b = (lags + 1) / n``) and the statistic is referred to Student's t with the estimate's
equivalent degrees of freedom ``3n / (2 (lags + 1))`` (Sun, Phillips and Jin 2008).

``promote_mode: auto`` promotes the best qualifying challenger through
:func:`signalcast.lifecycle.admin.promote_version` (audit row and ``model`` alert) and adds
the test statistics to that audit row; ``command`` only notifies, once per pair, and an operator
promotes. Every comparison with enough outcomes is recorded in ``promotion_checks``; the same
outcomes checked again add nothing, so running the job twice changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from signalcast.config import Settings
from signalcast.core.errors import SignalcastError
from signalcast.core.timeframes import utc
from signalcast.db.engine import session_scope
from signalcast.db.tables import ModelEvent, Outcome, Prediction, PromotionCheck
from signalcast.db.upsert import insert_ignore
from signalcast.features import DOWN, UP
from signalcast.routing.overrides import apply_override, overrides_for
from signalcast.routing.router import label, make_lineup, version_rows

log = logging.getLogger(__name__)

PROMOTED, QUALIFIED, KEPT, TOO_FEW = "promoted", "qualified", "kept", "too_few"
LAGS_PER_HORIZON = 2  # Newey-West lags = 2 x the target's horizon (module docstring)


@dataclass(frozen=True)
class DieboldMariano:
    n: int
    mean_diff: float  # mean of loss(challenger) - loss(champion); negative: challenger better
    se: float  # Newey-West standard error of the mean difference
    statistic: float  # (mean_diff + margin) / se
    p_value: float  # one-sided: small when the challenger is better by more than the margin
    lags: int
    margin: float
    df: float  # degrees of freedom of the t reference


def newey_west_variance(d: np.ndarray, lags: int) -> float:
    """Long-run variance of the series ``d`` (Bartlett weights ``1 - k / (lags + 1)``), the
    variance of ``sqrt(n) * mean(d)`` under autocorrelation up to ``lags``."""
    d = np.asarray(d, dtype=np.float64) - np.mean(d)
    n = len(d)
    variance = float(d @ d) / n
    for k in range(1, min(lags, n - 1) + 1):
        variance += 2.0 * (1.0 - k / (lags + 1.0)) * float(d[k:] @ d[:-k]) / n
    return max(variance, 0.0)


def diebold_mariano(loss_challenger: np.ndarray, loss_champion: np.ndarray, lags: int,
                    margin: float = 0.0) -> DieboldMariano:
    """One-sided Diebold-Mariano test that the challenger's loss is lower by more than
    ``margin``; see the module docstring.

    >>> rng = np.random.default_rng(0)
    >>> champion, challenger = rng.random(500) * 0.3, rng.random(500) * 0.2
    >>> diebold_mariano(challenger, champion, lags=5).p_value < 0.01
    True
    """
    from scipy.stats import t as student_t

    d = np.asarray(loss_challenger, dtype=np.float64) - np.asarray(loss_champion, np.float64)
    n = len(d)
    if n < 2:
        raise ValueError(f"need at least 2 paired losses, got {n}")
    mean = float(d.mean())
    b = min((lags + 1) / n, 0.5)  # fixed-b bias of the Bartlett estimate (module docstring)
    se = float(np.sqrt(newey_west_variance(d, lags) / (1.0 - b) / n))
    df = max(1.0, 3.0 * n / (2.0 * (lags + 1)))
    if se == 0.0:
        statistic = -np.inf if mean + margin < 0 else (np.inf if mean + margin > 0 else 0.0)
    else:
        statistic = (mean + margin) / se
    p_value = float(student_t.cdf(statistic, df=df)) if np.isfinite(statistic) else \
        (0.0 if statistic < 0 else 1.0)
    return DieboldMariano(n, mean, se, float(statistic), p_value, lags, margin, df)


@dataclass
class Comparison:
    """One challenger against the champion of one (asset, target)."""

    asset: str
    target: str
    champion: str
    challenger: str
    champion_id: int
    challenger_id: int
    n_shared: int
    decision: str = TOO_FEW  # promoted | qualified | kept | too_few
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def shared_outcomes(session: Session, champion_id: int, challenger_id: int,
                    now: datetime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(champion P(UP), challenger P(UP), y) on candles both predicted whose outcome resolved
    UP or DOWN by ``now``, in candle order."""
    champ, chal = aliased(Prediction), aliased(Prediction)
    rows = session.exec(
        select(champ.prob_up, chal.prob_up, Outcome.label)
        .join(chal, (chal.asset == champ.asset) & (chal.target == champ.target)
              & (chal.candle_time == champ.candle_time))
        .join(Outcome, (Outcome.asset == champ.asset) & (Outcome.target == champ.target)
              & (Outcome.candle_time == champ.candle_time))
        .where(champ.model_version_id == champion_id, chal.model_version_id == challenger_id,
               Outcome.label.in_((UP, DOWN)), Outcome.resolved_at <= now)
        .order_by(champ.candle_time)).all()
    data = np.array(rows, dtype=np.float64).reshape(len(rows), 3)
    return data[:, 0], data[:, 1], (data[:, 2] == UP).astype(np.float64)


def compare(p_champion: np.ndarray, p_challenger: np.ndarray, y: np.ndarray, *, lags: int,
            margin: float) -> dict[str, Any]:
    """Brier, AUC and the Diebold-Mariano test of one pair (JSON-ready)."""
    from sklearn.metrics import roc_auc_score

    loss_champion, loss_challenger = (p_champion - y) ** 2, (p_challenger - y) ** 2
    test = diebold_mariano(loss_challenger, loss_champion, lags, margin)
    two_classes = len(np.unique(y)) == 2
    return {
        "n": test.n, "brier_champion": float(loss_champion.mean()),
        "brier_challenger": float(loss_challenger.mean()),
        "auc_champion": float(roc_auc_score(y, p_champion)) if two_classes else None,
        "auc_challenger": float(roc_auc_score(y, p_challenger)) if two_classes else None,
        "test": "diebold_mariano_brier_newey_west", "mean_diff": test.mean_diff, "se": test.se,
        "statistic": test.statistic, "p_value": test.p_value, "lags": test.lags,
        "df": test.df, "margin": test.margin,
    }


def compare_target(session: Session, settings: Settings, asset: str, target: str,
                   now: datetime) -> list[Comparison]:
    """Every routed challenger of (asset, target) against its champion (no side effects)."""
    cfg = settings.target(target)
    policy = apply_override(settings.routing.policy(target),
                            overrides_for(session, asset).get(target))
    versions = [v for v in version_rows(session, asset) if v.target == target]
    lineup = make_lineup(settings, policy, versions)
    if lineup.champion is None:
        return []
    out = []
    for challenger in lineup.versions()[1:]:
        p_champ, p_chal, y = shared_outcomes(session, lineup.champion.id, challenger.id, now)
        item = Comparison(asset, target, label(lineup.champion), label(challenger),
                          lineup.champion.id, challenger.id, len(y))
        if len(y) >= policy.promote_min_outcomes:
            item.stats = compare(p_champ, p_chal, y, lags=LAGS_PER_HORIZON * cfg.horizon,
                                 margin=policy.promote_margin)
            better = (item.stats["p_value"] < policy.promote_significance
                      and item.stats["mean_diff"] < -policy.promote_margin)
            item.decision = QUALIFIED if better else KEPT
        out.append(item)
    return out


def evaluate_promotions(engine: Engine, settings: Settings, now: datetime, *,
                        actor: str = "promotion", mode: str | None = None) -> list[Comparison]:
    """Compare, record and act for every configured (asset, target); see the module docstring.
    ``mode`` overrides each target's ``promote_mode`` (``auto`` promotes the best qualifying
    challenger; ``command`` notifies)."""
    from signalcast.lifecycle.admin import promote_version

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
                    event = promote_version(engine, settings, asset.symbol, target.key,
                                            ":".join(best.challenger.rsplit(" v", 1)), actor,
                                            _reason(best))
                except SignalcastError as exc:  # e.g. an operator promoted it meanwhile
                    log.warning("%s %s: cannot promote %s: %s", asset.symbol, target.key,
                                best.challenger, exc)
                else:
                    best.decision = PROMOTED
                    _attach_stats(engine, event.id, best)
                    log.info("%s %s: promoted %s over %s (p=%.4g)", asset.symbol, target.key,
                             best.challenger, best.champion, best.stats["p_value"])
            with session_scope(engine) as session:
                for item in comparisons:
                    if item.decision != TOO_FEW:
                        _record(session, settings, item, now, notify=policy_mode != "auto")
            results += comparisons
    return results


def _reason(item: Comparison) -> str:
    s = item.stats
    return (f"Brier {s['brier_champion']:.4f} -> {s['brier_challenger']:.4f} over "
            f"{item.n_shared} shared outcomes; Diebold-Mariano (Newey-West, {s['lags']} lags) "
            f"p={s['p_value']:.4g}, margin {s['margin']:g}")


def _attach_stats(engine: Engine, event_id: int, item: Comparison) -> None:
    """Add the test statistics to the promotion's audit row (promote_version wrote it with the
    versions' training metrics)."""
    with session_scope(engine) as session:
        event = session.get(ModelEvent, event_id)
        event.stats = {**event.stats, "promotion_test": item.stats}
        session.add(event)


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
        from signalcast.alerts.rules import queue_model_event_alert

        queue_model_event_alert(
            session, settings, "promotion_ready", item.asset, item.target,
            to_label=item.challenger, from_label=item.champion, actor="promotion",
            reason=_reason(item) + "; promote it with /promote", stats=item.stats, at=now)
