"""What the dashboard reads: plain data, every query bounded by a LIMIT, read-only sessions.

Predictions are unconditional: ``prob_up`` is the chance the up level is touched first within
the horizon, ``prob_down`` the down level (None on old rows: ``1 - prob_up``), and the rest that
neither is. So the reliability diagram puts each direction's probability against how often that
direction was touched first, over every resolved outcome (an expiry is a miss for both), and
the champion-versus-challenger curves score the three outcomes (up, down, neither) with the
multi-outcome Brier score (0 perfect, 2 worst), as the skill figures of training do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from signalcast.config import Settings
from signalcast.core.versions import label
from signalcast.db.candles import read_candles
from signalcast.db.engine import session_scope
from signalcast.db.tables import (
    AlertOutbox,
    ModelVersion,
    Outcome,
    Prediction,
    PromotionCheck,
    TaskRun,
)
from signalcast.features import DOWN, UP

DIRECTIONS = ("up", "down")

CHART_CANDLES = 240  # candles on the price chart
RESOLVED_LIMIT = 5000  # newest resolved served predictions in the reliability diagram
SHARED_LIMIT = 2000  # newest shared outcomes per champion-challenger pair
CHALLENGERS_LIMIT = 8
LOG_LIMIT = 200  # rows of the alerts log and the task-run list
RELIABILITY_BINS = 10


def _p_down(prob_up: float, prob_down: float | None) -> float:
    return 1.0 - prob_up if prob_down is None else prob_down


@dataclass(frozen=True)
class PriceSeries:
    times: list[datetime]
    closes: list[float]
    probabilities: list[tuple[datetime, float, float]]  # served (candle, P(up), P(down))
    alerts: list[tuple[datetime, str, float, str]]  # (candle, direction, probability, status)
    held: list[tuple[datetime, str]]  # (candle, why): signals the skill gate held back


def price_series(engine: Engine, settings: Settings, asset: str, target: str,
                 candles: int = CHART_CANDLES) -> PriceSeries:
    """The newest ``candles`` closes, the served probabilities and the signal alerts on them."""
    timeframe = settings.asset(asset).timeframe
    with session_scope(engine, readonly=True) as session:
        frame = read_candles(session, asset, timeframe, limit=candles)
        times = [t.to_pydatetime() for t in frame.index]
        start = times[0] if times else None
        probs = select(Prediction.candle_time, Prediction.prob_up, Prediction.prob_down,
                       Prediction.alert_held).where(
            Prediction.asset == asset, Prediction.target == target, Prediction.served)
        alerts = select(AlertOutbox.candle_time, AlertOutbox.payload, AlertOutbox.status).where(
            AlertOutbox.asset == asset, AlertOutbox.target == target,
            AlertOutbox.kind == "signal")
        if start is not None:
            probs = probs.where(Prediction.candle_time >= start)
            alerts = alerts.where(AlertOutbox.candle_time >= start)
        prob_rows = session.exec(probs.order_by(col(Prediction.candle_time).desc())
                                 .limit(candles * 2)).all()
        alert_rows = session.exec(alerts.order_by(col(AlertOutbox.candle_time).desc())
                                  .limit(LOG_LIMIT)).all()
    seen: dict[datetime, tuple[datetime, str, float, str]] = {}
    for at, payload, status in alert_rows:  # one marker per candle, "sent" wins over others
        if at not in seen or status == "sent":
            seen[at] = (at, str(payload.get("direction", "?")),
                        float(payload.get("probability", 0.0)), status)
    return PriceSeries(times=times, closes=[float(c) for c in frame["close"]],
                       probabilities=sorted({t: (t, up, _p_down(up, down))
                                             for t, up, down, _ in prob_rows}.values()),
                       alerts=sorted(seen.values()),
                       held=sorted({t: (t, why) for t, _, _, why in prob_rows if why}.values()))


def held_counts(engine: Engine) -> dict[tuple[str, str], int]:
    """Served predictions per (asset, target) whose signal the skill gate held back."""
    with session_scope(engine, readonly=True) as session:
        rows = session.exec(select(Prediction.asset, Prediction.target, func.count()).where(
            Prediction.served, col(Prediction.alert_held).is_not(None))
            .group_by(Prediction.asset, Prediction.target).limit(10_000)).all()
    return {(asset, target): n for asset, target, n in rows}


@dataclass(frozen=True)
class ReliabilityBin:
    direction: str  # up | down
    low: float
    high: float
    n: int
    mean_predicted: float
    observed: float  # share that touched this direction first


def reliability(engine: Engine, asset: str, target: str, bins: int = RELIABILITY_BINS,
                limit: int = RESOLVED_LIMIT) -> tuple[list[ReliabilityBin], int]:
    """Served P(up first) and P(down first) against what happened, in ``bins`` equal-width bins
    per direction (empty bins left out), over the newest ``limit`` resolved served predictions;
    also returns how many predictions were used."""
    with session_scope(engine, readonly=True) as session:
        rows = session.exec(
            select(Prediction.prob_up, Prediction.prob_down, Outcome.label)
            .join(Outcome, (Outcome.asset == Prediction.asset)
                  & (Outcome.target == Prediction.target)
                  & (Outcome.candle_time == Prediction.candle_time))
            .where(Prediction.asset == asset, Prediction.target == target, Prediction.served)
            .order_by(col(Prediction.candle_time).desc()).limit(limit)).all()
    out = []
    for direction, happened in (("up", UP), ("down", DOWN)):
        groups: list[list[tuple[float, int]]] = [[] for _ in range(bins)]
        for prob_up, prob_down, outcome in rows:
            prob = prob_up if direction == "up" else _p_down(prob_up, prob_down)
            groups[min(bins - 1, max(0, int(prob * bins)))].append(
                (prob, int(outcome == happened)))
        out += [ReliabilityBin(direction, i / bins, (i + 1) / bins, len(g),
                               sum(p for p, _ in g) / len(g), sum(y for _, y in g) / len(g))
                for i, g in enumerate(groups) if g]
    return out, len(rows)


def three_outcome_brier(prob_up: float, prob_down: float | None, label: int) -> float:
    """Squared error over (up first, down first, neither) of one prediction (0..2).

    >>> three_outcome_brier(0.7, 0.2, UP)  # (0.3)^2 + 0.2^2 + 0.1^2
    0.14
    """
    p_down = _p_down(prob_up, prob_down)
    probs = (prob_up, p_down, max(0.0, 1.0 - prob_up - p_down))
    outcome = (label == UP, label == DOWN, label not in (UP, DOWN))
    return round(sum((p - float(y)) ** 2 for p, y in zip(probs, outcome, strict=True)), 12)


@dataclass(frozen=True)
class PairCurve:
    champion: str
    challenger: str
    n: int
    brier_champion: float | None
    brier_challenger: float | None
    running_champion: list[float]  # running mean Brier score, oldest shared outcome first
    running_challenger: list[float]


def _running(losses: list[float]) -> list[float]:
    total, out = 0.0, []
    for i, loss in enumerate(losses, 1):
        total += loss
        out.append(total / i)
    return out


def champion_vs_challengers(engine: Engine, asset: str, target: str,
                            limit: int = SHARED_LIMIT) -> list[PairCurve]:
    """The champion against each other version of (asset, target) that predicted the same
    candles, on their newest ``limit`` shared resolved outcomes (three-outcome Brier)."""
    with session_scope(engine, readonly=True) as session:
        versions = session.exec(select(ModelVersion.id, ModelVersion.family,
                                       ModelVersion.version, ModelVersion.role).where(
            ModelVersion.asset == asset, ModelVersion.target == target)
            .order_by(col(ModelVersion.id).desc()).limit(CHALLENGERS_LIMIT + 20)).all()
        champion = next((v for v in versions if v.role == "champion"), None)
        if champion is None:
            return []
        champ, chal = aliased(Prediction), aliased(Prediction)
        curves = []
        for other in [v for v in versions if v.id != champion.id][:CHALLENGERS_LIMIT]:
            rows = session.exec(
                select(champ.prob_up, champ.prob_down, chal.prob_up, chal.prob_down,
                       Outcome.label)
                .join(chal, (chal.asset == champ.asset) & (chal.target == champ.target)
                      & (chal.candle_time == champ.candle_time))
                .join(Outcome, (Outcome.asset == champ.asset)
                      & (Outcome.target == champ.target)
                      & (Outcome.candle_time == champ.candle_time))
                .where(champ.model_version_id == champion.id,
                       chal.model_version_id == other.id)
                .order_by(col(champ.candle_time).desc()).limit(limit)).all()[::-1]
            if not rows:
                continue
            lc = [three_outcome_brier(r[0], r[1], r[4]) for r in rows]
            lo = [three_outcome_brier(r[2], r[3], r[4]) for r in rows]
            curves.append(PairCurve(label(champion), label(other), len(rows),
                                    sum(lc) / len(lc), sum(lo) / len(lo),
                                    _running(lc), _running(lo)))
    return curves


def promotion_checks(engine: Engine, asset: str, target: str,
                     limit: int = 20) -> list[dict[str, Any]]:
    """The newest promotion decisions of (asset, target) with their test statistics."""
    with session_scope(engine, readonly=True) as session:
        rows = session.exec(select(PromotionCheck).where(
            PromotionCheck.asset == asset, PromotionCheck.target == target)
            .order_by(col(PromotionCheck.id).desc()).limit(limit)).all()
        return [{"evaluated_at": r.evaluated_at, "champion_id": r.champion_version_id,
                 "challenger_id": r.challenger_version_id, "n": r.n_shared,
                 "decision": r.decision, "e_value": r.stats.get("e_value"),
                 "threshold": r.stats.get("threshold")} for r in rows]


def alerts_log(engine: Engine, limit: int = LOG_LIMIT,
               status: str | None = None) -> list[AlertOutbox]:
    """The newest alerts (any kind, any chat), optionally of one status."""
    query = select(AlertOutbox)
    if status:
        query = query.where(AlertOutbox.status == status)
    with session_scope(engine, readonly=True) as session:
        return list(session.exec(query.order_by(col(AlertOutbox.id).desc()).limit(limit)).all())


def task_runs(engine: Engine, limit: int = LOG_LIMIT,
              status: str | None = None) -> list[TaskRun]:
    """The newest task runs, optionally of one status (``failed``: the failures)."""
    query = select(TaskRun)
    if status:
        query = query.where(TaskRun.status == status)
    with session_scope(engine, readonly=True) as session:
        return list(session.exec(query.order_by(col(TaskRun.id).desc()).limit(limit)).all())
