"""Promote a challenger policy once live outcomes show it is better than the champion.

For each (asset, target), every routed challenger (shadow or A/B) is compared with the champion
on the candles both predicted whose outcome resolved, expired ones included (three outcomes:
up first, down first, neither). A challenger is a *policy*, not one version: its record is the
union of the shadow predictions of its lineage (:func:`signalcast.routing.router.lineage`; a
daily retrain of the champion's family is one rolling challenger whose versions each live a
day), and winning promotes its newest version. Nothing is decided before
``promote_min_outcomes`` shared outcomes, nor before 8 horizons of them (overlapping outcomes:
about ``n / horizon`` of them are independent; :mod:`signalcast.stats.sequential`) unless an
operator lowered ``promote_min_outcomes`` below its default (:func:`effective_horizon`).

The test: Diebold-Mariano on the three-outcome Brier loss differences ``d_t = BS3(chal_t) -
BS3(champ_t)`` (:func:`signalcast.stats.skill.multi_brier` per row). Outcomes of neighbouring
candles overlap (each looks ``horizon`` candles ahead), so the variance of the mean difference
is the Newey-West long-run variance with Bartlett weights and ``lags = 3 * horizon``
(docs/ml-notes.md: plain tests overstate confidence here). Why 3, not 2: the losses of
overlapping outcomes are correlated over ``horizon`` lags, and Bartlett weights ``1 - k / (lags
+ 1)`` shrink those autocovariances (by half at lag ``horizon`` with 2H lags), so the variance
was underestimated: on simulated overlapping-outcome nulls (a moving sum of ``H`` shocks,
``H = 72``, 576-1152 outcomes) the test rejected 4.3% at a nominal 2.5% with ``2H`` lags, and
2.4-3.4% with ``3H``. One-sided, against the margin: H0
``E[d] >= -margin`` vs H1 ``E[d] < -margin``, statistic ``(mean(d) + margin) / se``, with the
fixed-b corrections of :mod:`signalcast.stats.diebold_mariano`.

Epochs: a drift alarm on the champion (:mod:`signalcast.pipeline.drift`) says its law changed;
the evidence before it is about the old regime and would dilute the new one for months. So
each alarm opens a new comparison epoch: the record restarts at the end of the alarm's block,
and epoch ``j`` (0: before any alarm) is tested at ``promote_significance * 6 / (pi^2 (j +
1)^2)``; the levels of all epochs sum to at most ``promote_significance``.

Repeated looks (:mod:`signalcast.stats.sequential`): the round runs daily on the whole,
growing record, and decides with an always-valid e-value (a normal mixture of the
Diebold-Mariano statistic, mapped through its t reference) against ``1 / level``: the chance
of ever promoting a no-better challenger stays at most ``promote_significance`` however often
the round runs, and a challenger that pulls ahead late is promoted when it does. Nothing is
decided before ``n_first = max(promote_min_outcomes, 8 * horizon)`` shared outcomes.
Acting on the verdict
(promote, record, notify) is :mod:`signalcast.lifecycle.promote`.
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
from signalcast.config.routing import RoutePolicy
from signalcast.core.timeframes import utc
from signalcast.core.versions import VersionRef, label
from signalcast.db.tables import ModelEvent, ModelVersion, Outcome, Prediction
from signalcast.routing.overrides import apply_override, overrides_for
from signalcast.routing.router import lineage, make_lineup, version_rows
from signalcast.stats.diebold_mariano import diebold_mariano
from signalcast.stats.sequential import epoch_alpha, evidence, first_look
from signalcast.stats.skill import onehot3

log = logging.getLogger(__name__)

PROMOTED, QUALIFIED, KEPT, TOO_FEW = "promoted", "qualified", "kept", "too_few"
FENCED = "fenced"  # the champion changed between the test and the promotion: nothing decided
LAGS_PER_HORIZON = 3  # Newey-West lags = 3 x the target's horizon (module docstring)


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


def shared_outcomes(session: Session, champion_id: int, challenger_ids: list[int] | int,
                    now: datetime, since: datetime | None = None,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(champion probabilities (n, 3), challenger probabilities (n, 3), one-hot outcomes (n, 3))
    of [up first, down first, neither] on candles the champion and the challenger's lineage
    (``challenger_ids``; the newest version of it where several predicted) both predicted,
    whose outcome resolved by ``now`` (expired included), from candle ``since`` on (None: all),
    in candle order."""
    ids = [challenger_ids] if isinstance(challenger_ids, int) else list(challenger_ids)
    champ, chal = aliased(Prediction), aliased(Prediction)
    rows = session.exec(
        select(champ.candle_time, chal.model_version_id, champ.prob_up, champ.prob_down,
               chal.prob_up, chal.prob_down, Outcome.label)
        .join(chal, (chal.asset == champ.asset) & (chal.target == champ.target)
              & (chal.candle_time == champ.candle_time))
        .join(Outcome, (Outcome.asset == champ.asset) & (Outcome.target == champ.target)
              & (Outcome.candle_time == champ.candle_time))
        .where(champ.model_version_id == champion_id, chal.model_version_id.in_(ids),
               Outcome.resolved_at <= now,
               *([] if since is None else [champ.candle_time >= since]))
        .order_by(champ.candle_time, chal.model_version_id)).all()
    by_candle = {row[0]: row[2:] for row in rows}  # the newest version wins a shared candle
    ordered = list(by_candle.values())
    p_champ = np.array([_three(r[0], r[1]) for r in ordered], np.float64).reshape(-1, 3)
    p_chal = np.array([_three(r[2], r[3]) for r in ordered], np.float64).reshape(-1, 3)
    return p_champ, p_chal, onehot3(np.array([r[4] for r in ordered], dtype=int))


def _three(p_up: float, p_down: float | None) -> tuple[float, float, float]:
    down = 1.0 - p_up if p_down is None else p_down
    return p_up, down, max(0.0, 1.0 - p_up - down)


def compare(p_champion: np.ndarray, p_challenger: np.ndarray, y: np.ndarray, *, lags: int,
            margin: float) -> dict[str, Any]:
    """Three-outcome Brier, AUC of P(up first) among touched outcomes and the Diebold-Mariano
    test of one pair (JSON-ready); inputs are (n, 3) [up, down, neither]."""
    from sklearn.metrics import roc_auc_score

    loss_champion = np.sum((p_champion - y) ** 2, axis=1)
    loss_challenger = np.sum((p_challenger - y) ** 2, axis=1)
    test = diebold_mariano(loss_challenger, loss_champion, lags, margin)
    touched = y[:, 2] == 0
    up = y[touched, 0]
    two_classes = len(np.unique(up)) == 2

    def auc(p: np.ndarray) -> float | None:
        return float(roc_auc_score(up, p[touched, 0])) if two_classes else None

    return {
        "n": test.n, "brier_champion": float(loss_champion.mean()),
        "brier_challenger": float(loss_challenger.mean()),
        "auc_champion": auc(p_champion), "auc_challenger": auc(p_challenger),
        "test": "diebold_mariano_brier3_newey_west", "mean_diff": test.mean_diff,
        "se": test.se, "statistic": test.statistic, "p_value": test.p_value,
        "lags": test.lags, "df": test.df, "margin": test.margin,
    }


def comparison_epoch(session: Session, asset: str, target: str,
                     champion_id: int) -> tuple[int, datetime | None]:
    """(drift alarms raised on the champion, the end of the newest alarm's block): the
    comparison's epoch and the candle it starts from (None: the champion's whole record)."""
    rows = session.exec(select(ModelEvent.stats).where(
        ModelEvent.asset == asset, ModelEvent.target == target, ModelEvent.event == "drift",
        ModelEvent.to_version_id == champion_id).order_by(ModelEvent.id)).all()
    starts = [r.get("candle_time") for r in rows if isinstance(r, dict)]
    if not starts or starts[-1] is None:
        return len(rows), None
    return len(rows), utc(datetime.fromisoformat(starts[-1]))


def effective_horizon(policy: RoutePolicy, horizon: int) -> int:
    """The horizon the first look's floor of ``8 * horizon`` outcomes counts in
    (:func:`signalcast.stats.sequential.first_look`); 1 (no floor) where an operator set
    ``promote_min_outcomes`` below its default, asking for earlier decisions on purpose (the
    demo does, to show a decision within minutes)."""
    default = RoutePolicy.model_fields["promote_min_outcomes"].default
    return horizon if policy.promote_min_outcomes >= default else 1


def all_versions(session: Session, asset: str, target: str) -> list[VersionRef]:
    """Every version of (asset, target), purged ones included (their predictions still count
    for their lineage), newest first."""
    rows = session.exec(select(ModelVersion.id, ModelVersion.asset, ModelVersion.target,
                               ModelVersion.family, ModelVersion.version, ModelVersion.role,
                               ModelVersion.created_at, ModelVersion.sha256)
                        .where(ModelVersion.asset == asset, ModelVersion.target == target)
                        .order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())).all()
    return [VersionRef(*row) for row in rows]


def compare_target(session: Session, settings: Settings, asset: str, target: str,
                   now: datetime) -> list[Comparison]:
    """Every routed challenger policy of (asset, target) against its champion (no side
    effects)."""
    cfg = settings.target(target)
    policy = apply_override(settings.routing.policy(target),
                            overrides_for(session, asset).get(target))
    versions = [v for v in version_rows(session, asset) if v.target == target]
    lineup = make_lineup(settings, policy, versions)
    if lineup.champion is None:
        return []
    every = all_versions(session, asset, target)
    epoch, since = comparison_epoch(session, asset, target, lineup.champion.id)
    level = epoch_alpha(epoch, policy.promote_significance)
    n_first = first_look(policy.promote_min_outcomes, effective_horizon(policy, cfg.horizon))
    out = []
    for challenger in lineup.versions()[1:]:
        ids = lineage(lineup.champion, challenger, every)
        p_champ, p_chal, y = shared_outcomes(session, lineup.champion.id, ids, now, since)
        item = Comparison(asset, target, label(lineup.champion), label(challenger),
                          lineup.champion.id, challenger.id, len(y))
        if len(y) >= n_first:
            item.stats = compare(p_champ, p_chal, y, lags=LAGS_PER_HORIZON * cfg.horizon,
                                 margin=policy.promote_margin)
            test = evidence(-item.stats["statistic"], item.stats["df"], len(y), n_first, level)
            item.stats.update(test="always_valid_mixture_diebold_mariano_brier3_newey_west",
                              e_value=test.e_value, threshold=1.0 / level, level=level,
                              z=test.z, n_planned=test.n_planned, epoch=epoch,
                              since=None if since is None else since.isoformat(),
                              significance=policy.promote_significance,
                              lineage=[label(v) for v in every if v.id in ids])
            better = test.passed and item.stats["mean_diff"] < -policy.promote_margin
            item.decision = QUALIFIED if better else KEPT
        out.append(item)
    return out
