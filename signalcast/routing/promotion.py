"""Promote a challenger once live outcomes show it is better than the champion.

For each (asset, target), every routed challenger (shadow or A/B) is compared with the champion
on the candles both predicted and whose outcome resolved UP or DOWN (expired outcomes carry no
direction). Nothing is decided before ``promote_min_outcomes`` shared outcomes.

The test: Diebold-Mariano on the Brier loss differences ``d_t = (p_chal - y)^2 - (p_champ -
y)^2``. Outcomes of neighbouring candles overlap (each looks ``horizon`` candles ahead), so the
variance of the mean difference is the Newey-West long-run variance with Bartlett weights and
``lags = 2 * horizon`` (docs/ml-notes.md: plain tests overstate confidence here). One-sided, against
the margin: H0 ``E[d] >= -margin`` vs H1 ``E[d] < -margin`` (the challenger's Brier is lower by
more than ``promote_margin``), statistic ``(mean(d) + margin) / se``. The challenger qualifies
when ``p < promote_significance``.

Small samples: with a 72-candle horizon, 300 outcomes hold only a handful of independent
stretches, and the textbook test (``lags = horizon``, normal or t(n-1) reference) rejected a
true null 10-17% of the time at a nominal 5% (simulated overlapping-outcome losses). Two
fixed-b corrections bring that to 6-8%: the Bartlett estimate is divided by ``1 - b`` (its bias
with ``b = (lags + 1) / n``) and the statistic is referred to Student's t with the estimate's
equivalent degrees of freedom ``3n / (2 (lags + 1))`` (Sun, Phillips and Jin 2008).

The test itself lives in :mod:`signalcast.stats.diebold_mariano`; acting on its verdict
(promote, record, notify) in :mod:`signalcast.lifecycle.promote`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from signalcast.config import Settings
from signalcast.core.versions import label
from signalcast.db.tables import Outcome, Prediction
from signalcast.features import DOWN, UP
from signalcast.routing.overrides import apply_override, overrides_for
from signalcast.routing.router import make_lineup, version_rows
from signalcast.stats.diebold_mariano import diebold_mariano

log = logging.getLogger(__name__)

PROMOTED, QUALIFIED, KEPT, TOO_FEW = "promoted", "qualified", "kept", "too_few"
LAGS_PER_HORIZON = 2  # Newey-West lags = 2 x the target's horizon (module docstring)


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
