"""Read-only figures for people: the demo's summary table and ``signalcast status``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, select

from signalcast.db.tables import AlertOutbox, Candle, ModelVersion, Outcome, Prediction, TaskRun
from signalcast.features import DOWN, UP


@dataclass
class TargetSummary:
    asset: str
    target: str
    predictions: int
    resolved: int  # served predictions with an UP/DOWN outcome
    expired: int
    hits: int  # served predictions whose more likely direction happened
    alerts_sent: int  # signal alerts sent (not the hit / miss follow-ups)
    ups: int = 0  # resolved outcomes that went up first
    top: float | None = None  # highest served chance of either direction
    held: int = 0  # served predictions whose alert the skill gate held

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.resolved if self.resolved else None

    @property
    def majority_rate(self) -> float | None:
        """The benchmark of :attr:`hit_rate`: "always the majority direction" on the same
        resolved outcomes (known only in hindsight, so generous to the benchmark)."""
        return max(self.ups, self.resolved - self.ups) / self.resolved if self.resolved else None


def says_up(prob_up: float, prob_down: float | None) -> bool:
    """The more likely direction of a stored prediction is up (``prob_down`` None: a row from
    before three outcomes, whose P(down) was ``1 - prob_up``)."""
    return prob_up >= (1.0 - prob_up if prob_down is None else prob_down)


def target_summaries(session: Session) -> list[TargetSummary]:
    served = select(Prediction.asset, Prediction.target, Prediction.prob_up, Prediction.prob_down,
                    Prediction.alert_held, Outcome.label).join(
        Outcome, (Outcome.asset == Prediction.asset) & (Outcome.target == Prediction.target)
        & (Outcome.candle_time == Prediction.candle_time), isouter=True,
    ).where(Prediction.served)
    rows: dict[tuple[str, str], TargetSummary] = {}
    for asset, target, prob_up, prob_down, held, label in session.exec(served).all():
        s = rows.setdefault((asset, target), TargetSummary(asset, target, 0, 0, 0, 0, 0))
        s.predictions += 1
        chance = max(prob_up, 1.0 - prob_up if prob_down is None else prob_down)
        s.top = chance if s.top is None else max(s.top, chance)
        s.held += held is not None
        if label in (UP, DOWN):
            s.resolved += 1
            s.ups += int(label == UP)
            s.hits += int(says_up(prob_up, prob_down) == (label == UP))
        elif label is not None:
            s.expired += 1
    sent = select(AlertOutbox.asset, AlertOutbox.target, func.count()).where(
        AlertOutbox.status == "sent", AlertOutbox.kind == "signal").group_by(
        AlertOutbox.asset, AlertOutbox.target)
    for asset, target, count in session.exec(sent).all():
        rows.setdefault((asset, target), TargetSummary(asset, target, 0, 0, 0, 0, 0))
        rows[(asset, target)].alerts_sent = count
    return [rows[k] for k in sorted(rows)]


def table_counts(session: Session) -> dict[str, int]:
    tables = {"candles": Candle, "model_versions": ModelVersion, "predictions": Prediction,
              "outcomes": Outcome, "alert_outbox": AlertOutbox, "task_runs": TaskRun}
    return {name: session.exec(select(func.count()).select_from(t)).one()
            for name, t in tables.items()}


def alert_counts(session: Session) -> dict[str, int]:
    query = select(AlertOutbox.status, func.count()).group_by(AlertOutbox.status)
    return dict(session.exec(query).all())


def task_counts(session: Session) -> dict[str, dict[str, int]]:
    query = select(TaskRun.name, TaskRun.status, func.count()).group_by(TaskRun.name,
                                                                        TaskRun.status)
    out: dict[str, dict[str, int]] = {}
    for name, status, count in session.exec(query).all():
        out.setdefault(name, {})[status] = count
    return out
