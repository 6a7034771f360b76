"""No alert without skill: may the model that serves an (asset, target) send signal alerts?

Two conditions, both on evidence the model did not fit:

1. **Walk-forward**: the version's stored gate (``metrics.gate_open``, set by training: Brier
   skill against the causal base rate above zero with a block-bootstrap lower bound above zero,
   for the direction and for the three-outcome forecast). A version without it (trained before
   the gate existed) has shown nothing: held until retrained.
2. **Live**: on its own resolved served predictions (the newest :data:`LIVE_ROWS`), the
   unconditional three-outcome forecast ``[p_up, p_down, p_none]`` is not significantly worse
   than the causal base rate (circular block bootstrap, blocks of one horizon). Checked once
   :func:`min_live_rows` outcomes have resolved.

Otherwise predictions are still recorded and the alert is held with the reason. An admin
overrides per target with ``models.alert_without_skill`` (target keys, or ``"*"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlmodel import Session, select

from signalcast.config import Settings
from signalcast.core.timeframes import timeframe_to_timedelta
from signalcast.db.tables import ModelVersion, Outcome, Prediction
from signalcast.features import DOWN, UP
from signalcast.stats.skill import causal_base_rate, onehot3, skill_test

LIVE_ROWS = 5000  # bounded read: the newest resolved predictions of the version
LIVE_BOOTSTRAP = 500


def min_live_rows(horizon: int) -> int:
    """Resolved outcomes before the live test applies: about ten independent episodes."""
    return max(100, 10 * horizon)


@dataclass(frozen=True)
class GateState:
    open: bool
    reason: str
    walk_forward: dict[str, Any] = field(default_factory=dict)
    live: dict[str, Any] | None = None
    overridden: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"open": self.open, "reason": self.reason, "walk_forward": self.walk_forward,
                "live": self.live, "overridden": self.overridden}


def overridden(settings: Settings, target: str) -> bool:
    allowed = settings.models.alert_without_skill
    return "*" in allowed or target in allowed


def _version(session: Session, asset: str, target: str,
             version_id: int | None) -> tuple[int | None, dict]:
    query = select(ModelVersion.id, ModelVersion.metrics)
    if version_id is not None:
        query = query.where(ModelVersion.id == version_id)
    else:
        query = query.where(ModelVersion.asset == asset, ModelVersion.target == target,
                            ModelVersion.role == "champion")
    row = session.exec(query).first()
    return (None, {}) if row is None else (row[0], dict(row[1] or {}))


def live_skill(session: Session, settings: Settings, asset: str, target: str,
               version_id: int) -> dict[str, Any] | None:
    """Served three-outcome skill of ``version_id`` vs the causal base rate on its newest
    resolved predictions, or None with fewer than :func:`min_live_rows`."""
    cfg = settings.target(target)
    rows = session.exec(select(Prediction.candle_time, Prediction.prob_up,
                               Prediction.prob_down, Outcome.label).join(
        Outcome, (Outcome.asset == Prediction.asset) & (Outcome.target == Prediction.target)
        & (Outcome.candle_time == Prediction.candle_time))
        .where(Prediction.model_version_id == version_id, Prediction.served)
        .order_by(Prediction.candle_time.desc()).limit(LIVE_ROWS)).all()
    if len(rows) < min_live_rows(cfg.horizon):
        return None
    rows = rows[::-1]
    step = timeframe_to_timedelta(settings.asset(asset).timeframe).total_seconds()
    t0 = rows[0][0]
    pos = np.array([round((t - t0).total_seconds() / step) for t, *_ in rows])
    p_up = np.array([r[1] for r in rows], float)
    p_down = np.array([1.0 - r[1] if r[2] is None else r[2] for r in rows], float)
    probs = np.column_stack([p_up, p_down, np.clip(1.0 - p_up - p_down, 0.0, 1.0)])
    y = onehot3(np.array([r[3] for r in rows]), up=UP, down=DOWN)
    ref = causal_base_rate(y, pos, pos, cfg.horizon, prior=np.full(3, 1 / 3), strength=3.0)
    mine = skill_test(y, probs, ref, block=cfg.horizon, n_boot=LIVE_BOOTSTRAP)
    # "significantly worse": the base rate's skill over the model has a lower bound above 0
    worse = skill_test(y, ref, probs, block=cfg.horizon, n_boot=LIVE_BOOTSTRAP)
    return {"n": len(rows), "skill": round(mine.skill, 4), "skill_lower": round(mine.lower, 4),
            "worse": bool(worse.lower > 0)}


def signal_gate(session: Session, settings: Settings, asset: str, target: str,
                version_id: int | None = None) -> GateState:
    """Whether the version serving (``version_id``; None: the champion) may alert now."""
    vid, metrics = _version(session, asset, target, version_id)
    wf = {k: metrics.get(k) for k in ("brier_skill", "skill_lower", "skill3", "skill3_lower",
                                       "gate_open", "gate_reason") if k in metrics}
    live = None
    if vid is None:
        state = GateState(False, "no champion model to show skill", wf)
    elif "gate_open" not in metrics:
        state = GateState(False, "no walk-forward skill evidence (trained before the skill "
                          "gate): retrain it", wf)
    elif not metrics["gate_open"]:
        state = GateState(False, f"walk-forward: {metrics.get('gate_reason', 'no skill')}", wf)
    else:
        live = live_skill(session, settings, asset, target, vid)
        if live is not None and live["worse"]:
            state = GateState(False, f"live: served skill {live['skill']:+.3f} on "
                              f"{live['n']} outcomes is significantly worse than the base "
                              "rate", wf, live)
        else:
            state = GateState(True, metrics.get("gate_reason", "skill shown"), wf, live)
    if not state.open and overridden(settings, target):
        return GateState(True, f"admin override (models.alert_without_skill); {state.reason}",
                         wf, live, overridden=True)
    return state
