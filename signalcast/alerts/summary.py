"""The daily summary alert: per (asset, target), what was served and how it turned out, each
figure beside its benchmark (hit rate beside "always the majority direction", live AUC beside
its label-shift null, the skill gate's state); weekly (``alerts.summary_chart``) with the
pooled reliability of what was served, which the drain draws as a chart."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from signalcast.alerts.gate import signal_gate
from signalcast.alerts.rules import ALL, queue_alert
from signalcast.config import Settings
from signalcast.core.timeframes import utc
from signalcast.db.tables import Outcome, Prediction
from signalcast.features import DOWN, UP


def _served_outcomes(session: Session, since: datetime, until: datetime) -> list[tuple]:
    """(asset, target, P(up), P(down), label) of served predictions resolved in (since,
    until], in candle order."""
    return session.exec(select(Prediction.asset, Prediction.target, Prediction.prob_up,
                               Prediction.prob_down, Outcome.label).join(
        Outcome, (Outcome.asset == Prediction.asset) & (Outcome.target == Prediction.target)
        & (Outcome.candle_time == Prediction.candle_time))
        .where(Prediction.served, Outcome.resolved_at > since, Outcome.resolved_at <= until)
        .order_by(Prediction.candle_time)).all()


def performance(session: Session, settings: Settings, since: datetime,
                until: datetime) -> list[dict[str, Any]]:
    """Per configured (asset, target): served predictions resolved in (since, until], each
    figure beside its benchmark: hits (the more likely direction happened) and hit rate beside
    "always the majority direction" on the same outcomes, live AUC beside its label-shift null
    (mean and sd: overlapping outcomes keep their runs), expired, and whether its signal alerts
    are held by the skill gate (and why)."""
    from sklearn.metrics import roc_auc_score

    from signalcast.stats.skill import auc_null

    rows = _served_outcomes(session, since, until)
    out = []
    for asset in settings.assets:
        for target in settings.targets:
            # (P(up) - P(down), label): ranks like P(up | touched); > 0 says up
            mine = [(p - (1.0 - p if q is None else q), label) for a, t, p, q, label in rows
                    if a == asset.symbol and t == target.key]
            resolved = [(p, label) for p, label in mine if label in (UP, DOWN)]
            hits = sum((p >= 0) == (label == UP) for p, label in resolved)
            ups = [label == UP for _, label in resolved]
            auc = null = None
            if 0 < sum(ups) < len(ups):
                auc = float(roc_auc_score(ups, [p for p, _ in resolved]))
                if len(ups) > 2 * target.horizon:  # shifts need room to move the labels
                    shifted = auc_null(ups, [p for p, _ in resolved], target.horizon,
                                       n_shifts=200)
                    null = [round(shifted.null_mean, 4), round(shifted.null_sd, 4)]
            gate = signal_gate(session, settings, asset.symbol, target.key)
            out.append({"asset": asset.symbol, "target": target.key, "resolved": len(resolved),
                        "hits": hits, "hit_rate": hits / len(resolved) if resolved else None,
                        "majority": (max(sum(ups), len(ups) - sum(ups)) / len(ups)
                                     if ups else None),
                        "auc": auc, "auc_null": null, "expired": len(mine) - len(resolved),
                        "alerts_held": None if gate.open else gate.reason})
    return out


def summary_reliability(session: Session, since: datetime, until: datetime,
                        bins: int = 10) -> dict[str, Any] | None:
    """Pooled reliability of served P(up first) and P(down first) resolved in (since, until]
    against what happened (an expired outcome is neither), shaped as the served report's
    ``scores`` section (bins of ``lo, hi, n, predicted, observed``) for the summary's chart;
    None without an outcome."""
    from signalcast.evaluation.metrics import reliability_curve

    rows = _served_outcomes(session, since, until)
    if not rows:
        return None
    p_up = [r[2] for r in rows]
    p_down = [1.0 - r[2] if r[3] is None else r[3] for r in rows]

    def curve(p, happened):
        return [{"lo": b.lower, "hi": b.upper, "n": b.n, "predicted": b.mean_predicted,
                 "observed": b.fraction_up} for b in reliability_curve(happened, p, bins)]

    return {"n": len(rows),
            "reliability_up": curve(p_up, [float(r[4] == UP) for r in rows]),
            "reliability_down": curve(p_down, [float(r[4] == DOWN) for r in rows])}


def summary_has_chart(settings: Settings, now: datetime) -> bool:
    """Whether the summary of ``now``'s day carries the reliability chart
    (``alerts.summary_chart``: ``weekly``, on Mondays UTC; ``daily``; ``off``)."""
    mode = settings.alerts.summary_chart
    return mode == "daily" or (mode == "weekly" and utc(now).weekday() == 0)


def queue_summary_alerts(session: Session, settings: Settings, now: datetime) -> int:
    """The daily summary (one per chat per UTC day) over the last ``alerts.summary_days``;
    on the days of :func:`summary_has_chart`, with the pooled reliability of what was served
    (the drain draws it as a chart)."""
    now = utc(now)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    since = now - timedelta(days=settings.alerts.summary_days)
    payload: dict[str, Any] = {"since": since.isoformat(), "until": now.isoformat(),
                               "days": settings.alerts.summary_days}
    payload["rows"] = performance(session, settings, since, now)
    if summary_has_chart(settings, now):
        payload["reliability"] = summary_reliability(session, since, now)
    return queue_alert(session, settings, "summary", ALL, "daily", day, payload)
