"""Scores of P(UP) predictions against resolved first-touch labels.

Every score is computed on the same rows for every model (the walk-forward's out-of-fold rows),
so a table of them compares like with like. Alerts follow the live rule: with threshold ``thr``,
``P(up) >= thr`` alerts UP and ``1 - P(up) >= thr`` (i.e. ``P(up) <= 1 - thr``) alerts DOWN.

>>> s = score([1, 0, 1, 0], [0.9, 0.2, 0.6, 0.4], threshold=0.8)
>>> s.auc, s.alerts.n_alerts, s.alerts.precision
(1.0, 2, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

_EPS = 1e-15  # log-loss clipping, as scikit-learn does for float64


@dataclass(frozen=True)
class DirectionStats:
    """Alerts for one direction: how many, how often right, which share of that outcome caught."""

    n_alerts: int
    precision: float | None  # None when nothing was alerted
    recall: float | None  # None when the outcome never happened


@dataclass(frozen=True)
class AlertStats:
    """Alert quality at a threshold, per direction and overall.

    Overall precision = correct alerts / alerts; overall recall = correctly alerted rows / rows
    (each row has exactly one outcome, so this is the share of outcomes caught by a right alert).
    """

    threshold: float
    up: DirectionStats
    down: DirectionStats
    n_alerts: int
    precision: float | None
    recall: float


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of the reliability curve: predictions in [lower, upper)."""

    lower: float
    upper: float
    n: int
    mean_predicted: float | None
    fraction_up: float | None


@dataclass(frozen=True)
class Scores:
    n: int
    base_rate_up: float
    auc: float | None  # None when the rows hold one class only
    brier: float
    log_loss: float
    ece: float  # expected calibration error: n-weighted |mean predicted - fraction up|
    alerts: AlertStats
    reliability: list[ReliabilityBin]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def alert_stats(y: np.ndarray, p: np.ndarray, threshold: float) -> AlertStats:
    """Precision and recall of the two-sided alert rule at ``threshold`` (> 0.5)."""
    if not 0.5 < threshold <= 1:
        raise ValueError(f"alert threshold must be in (0.5, 1], got {threshold}")
    y, p = np.asarray(y), np.asarray(p, dtype=float)
    # the live rule (services.alert_rules): UP when p >= thr, DOWN when 1 - p >= thr; written
    # the same way so 0.2 at threshold 0.8 alerts DOWN here too (0.2 <= 1 - 0.8 is False)
    up_alert, down_alert = p >= threshold, 1.0 - p >= threshold
    up_hit, down_hit = int((up_alert & (y == 1)).sum()), int((down_alert & (y == 0)).sum())
    n_up, n_down = int(up_alert.sum()), int(down_alert.sum())
    n_alerts = n_up + n_down
    return AlertStats(
        threshold=float(threshold),
        up=DirectionStats(n_up, _ratio(up_hit, n_up), _ratio(up_hit, int((y == 1).sum()))),
        down=DirectionStats(n_down, _ratio(down_hit, n_down),
                            _ratio(down_hit, int((y == 0).sum()))),
        n_alerts=n_alerts,
        precision=_ratio(up_hit + down_hit, n_alerts),
        recall=(up_hit + down_hit) / len(y) if len(y) else 0.0,
    )


def reliability_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1]; the last bin includes 1.0. Empty bins are kept (n=0)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.floor(p * bins).astype(int), 0, bins - 1)  # 0.6 * 10 -> bin 6 exactly
    out = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        out.append(ReliabilityBin(
            lower=float(edges[b]), upper=float(edges[b + 1]), n=n,
            mean_predicted=float(p[inside].mean()) if n else None,
            fraction_up=float(y[inside].mean()) if n else None,
        ))
    return out


def score(y, p, threshold: float, bins: int = 10) -> Scores:
    """All scores of predictions ``p`` = P(UP) for labels ``y`` (1 = UP first, 0 = DOWN first)."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    if y.shape != p.shape or y.ndim != 1 or len(y) == 0:
        raise ValueError(f"need two equal, non-empty 1-D arrays, got {y.shape} and {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("predictions must be finite probabilities in [0, 1]")
    clipped = np.clip(p, _EPS, 1 - _EPS)
    curve = reliability_curve(y, p, bins)
    ece = sum(b.n * abs(b.mean_predicted - b.fraction_up) for b in curve if b.n) / len(y)
    return Scores(
        n=len(y),
        base_rate_up=float(y.mean()),
        auc=float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None,
        brier=float(np.mean((p - y) ** 2)),
        log_loss=float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))),
        ece=float(ece),
        alerts=alert_stats(y, p, threshold),
        reliability=curve,
    )


def null_auc_sd(n_up: int, n_down: int) -> float:
    """Standard deviation of the AUC of an uninformative score under exchangeable labels
    (the Mann-Whitney null, no ties): ``sqrt((n_up + n_down + 1) / (12 n_up n_down))``."""
    return float(np.sqrt((n_up + n_down + 1) / (12.0 * n_up * n_down)))
