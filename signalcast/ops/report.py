"""What was served, judged on what happened: the data of ``signalcast report``.

Reads the served predictions (``predictions.served``: the champion, or the A/B challenger that
served that candle) and their resolved outcomes from the database, and for each (asset, target)
and pooled over all of them returns:

* **reliability** of the served P(up first) and P(down first) (both unconditional: an expired
  outcome is neither) against the observed frequency, in equal-width bins with their counts,
  each with the circular block-bootstrap interval of its observed frequency (block = the
  horizon: 2,250 hourly ticks of 72-candle outcomes are only ~31 independent outcomes, so a bin
  can miss "within 0.05" by sampling error alone; the interval says when);
* **Brier** of P(up first) and the three-outcome Brier of ``[p_up, p_down, p_none]``, each
  beside the **causal base rate** (the outcome frequency of the outcomes resolved before each
  candle, :func:`~signalcast.stats.skill.causal_base_rate`), with the Brier skill and its
  circular block-bootstrap lower bound (block = the horizon, so overlapping outcomes stay
  together);
* **AUC** of P(up first) beside its circular label-shift null (mean and sd);
* **alerts stated vs realised**: the signal alerts queued for delivery (one per candle, however
  many chats), the mean probability they stated and the share that came true (the signalled
  level touched first; an expired outcome is a miss).

Pooled figures concatenate the series (each in time order, each with its own base rate); the
bootstrap block is the longest horizon. Everything is plain data (JSON-ready); the figure is a
PNG drawn on matplotlib's Agg canvas (no pyplot), so the weekly summary can send it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import select

from signalcast.alerts.rules import is_hit, outcome_result
from signalcast.config import Settings
from signalcast.core.timeframes import timeframe_to_timedelta
from signalcast.db.engine import session_scope
from signalcast.db.tables import AlertOutbox, Outcome, Prediction
from signalcast.features import DOWN, UP
from signalcast.stats.skill import auc_null, causal_base_rate, onehot3, skill_test

TOLERANCE = 0.05  # a bin is "within" when |mean predicted - observed| <= this
MIN_BIN = 100  # bins with fewer predictions are shown but not judged
POOLED = "pooled"
QUEUED = ("pending", "sending", "sent")  # alert statuses that count as "sent"
# a signal the drain found stale (status "expired": never delivered) counts only when asked,
# e.g. in a replay on a simulated clock, where every signal is stale by the wall clock
UNDELIVERED = ("expired",)


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10, *, block: int | None = None,
                n_boot: int = 500, alpha: float = 0.05, seed: int = 0) -> list[dict[str, Any]]:
    """Equal-width bins of ``p`` in [0, 1]: count, mean predicted, observed frequency of ``y``
    and whether they are within :data:`TOLERANCE` (None below :data:`MIN_BIN` predictions).

    With ``block`` (rows in time order; the label horizon), each bin also carries the
    ``1 - alpha`` circular block-bootstrap interval of its observed frequency
    (``observed_lo``/``observed_hi``), ``n_eff`` (about one independent outcome per ``block``
    rows: the bin's rows over the horizon) and ``consistent``: whether its mean prediction lies
    inside that interval, i.e. whether the gap could be sampling error. Overlapping outcomes
    make a bin of a few hundred hourly rows only a handful of independent episodes, so "within
    0.05" is shown beside the interval, never instead of it.

    >>> [b["n"] for b in reliability(np.array([0.05, 0.15, 0.16]), np.array([0, 1, 0]), 2)]
    [3, 0]
    """
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    lo_hi = _bin_intervals(which, y, bins, block, n_boot, alpha, seed) if block else None
    out = []
    for k in range(bins):
        sel = which == k
        n = int(sel.sum())
        pred = float(p[sel].mean()) if n else None
        obs = float(y[sel].mean()) if n else None
        within = None if n < MIN_BIN else bool(abs(pred - obs) <= TOLERANCE)
        row = {"lo": float(edges[k]), "hi": float(edges[k + 1]), "n": n,
               "predicted": pred, "observed": obs, "within": within}
        if lo_hi is not None:
            lo, hi = (None, None) if not n else (float(lo_hi[0][k]), float(lo_hi[1][k]))
            row.update(observed_lo=lo, observed_hi=hi, n_eff=round(n / block, 1),
                       consistent=None if not n else bool(lo - 1e-12 <= pred <= hi + 1e-12))
        out.append(row)
    return out


def _bin_intervals(which: np.ndarray, y: np.ndarray, bins: int, block: int, n_boot: int,
                   alpha: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per bin, the ``alpha/2`` and ``1 - alpha/2`` quantiles of the observed frequency over
    circular block-bootstrap replicates of the time-ordered rows (replicates in which the bin
    is empty are left out)."""
    n = len(y)
    block = int(max(1, min(block, n)))
    rng = np.random.default_rng(seed)
    n_blocks = int(np.ceil(n / block))
    lo, hi = np.full(bins, np.nan), np.full(bins, np.nan)
    counts = np.zeros((n_boot, bins))
    hits = np.zeros((n_boot, bins))
    for r in range(n_boot):  # one replicate at a time: bounded memory for long histories
        starts = rng.integers(0, n, size=n_blocks)
        idx = ((starts[:, None] + np.arange(block)[None, :]).ravel()[:n]) % n
        counts[r] = np.bincount(which[idx], minlength=bins)
        hits[r] = np.bincount(which[idx], weights=y[idx], minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = np.where(counts > 0, hits / counts, np.nan)
    for k in range(bins):
        col = freq[:, k][np.isfinite(freq[:, k])]
        if len(col):
            lo[k], hi[k] = np.quantile(col, alpha / 2), np.quantile(col, 1 - alpha / 2)
    return lo, hi


def _consistent(bins: list[dict]) -> dict[str, int]:
    judged = [b for b in bins if b["within"] is not None and b.get("consistent") is not None]
    return {"judged": len(judged), "consistent": sum(b["consistent"] for b in judged)}


def _judged(bins: list[dict]) -> dict[str, int]:
    judged = [b for b in bins if b["within"] is not None]
    return {"judged": len(judged), "within": sum(b["within"] for b in judged)}


def _score(y3: np.ndarray, probs: np.ndarray, ref3: np.ndarray, horizon: int, *,
           n_boot: int, bins: int) -> dict[str, Any]:
    """The skill, AUC and reliability figures of rows in time order (``y3``/``probs``/``ref3``:
    (n, 3) as [up, down, none])."""
    y_up, p_up, r_up = y3[:, 0], probs[:, 0], ref3[:, 0]
    up = skill_test(y_up, p_up, r_up, block=horizon, n_boot=n_boot)
    three = skill_test(y3, probs, ref3, block=horizon, n_boot=n_boot)
    out: dict[str, Any] = {
        "n": int(len(y3)), "frequency": dict(zip(("up", "down", "none"),
                                                 map(float, y3.mean(axis=0)), strict=True)),
        "brier_up": float(np.mean((p_up - y_up) ** 2)),
        "base_brier_up": float(np.mean((r_up - y_up) ** 2)),
        "skill_up": up.skill, "skill_up_lower": up.lower, "skill_up_p": up.p_value,
        "brier3": float(np.mean(np.sum((probs - y3) ** 2, axis=1))),
        "base_brier3": float(np.mean(np.sum((ref3 - y3) ** 2, axis=1))),
        "skill3": three.skill, "skill3_lower": three.lower, "skill3_p": three.p_value,
        "block": int(horizon), "auc": None, "auc_null_mean": None, "auc_null_sd": None,
        "auc_p": None,
        "reliability_up": reliability(p_up, y_up, bins, block=horizon, n_boot=n_boot),
        "reliability_down": reliability(probs[:, 1], y3[:, 1], bins, block=horizon,
                                        n_boot=n_boot),
    }
    if 0 < y_up.sum() < len(y_up):
        null = auc_null(y_up, p_up, horizon)
        out.update(auc=null.auc, auc_null_mean=null.null_mean, auc_null_sd=null.null_sd,
                   auc_p=null.p_value)
    out["bins_up"] = _judged(out["reliability_up"])
    out["bins_down"] = _judged(out["reliability_down"])
    # judged bins whose mean prediction lies inside the block-bootstrap interval of the observed
    # frequency (the gap could be sampling error); beside "within", not instead of it
    out["bins_up_consistent"] = _consistent(out["reliability_up"])
    out["bins_down_consistent"] = _consistent(out["reliability_down"])
    return out


def _alerts(rows: list[tuple], *, n_boot: int = 1000, alpha: float = 0.05,
            seed: int = 0) -> dict[str, Any]:
    """(direction, stated probability, outcome label or None[, episode]) per alerted candle.

    Alerts closer together than their horizon share outcomes (one move resolves them all), so
    the realised share is uncertain by episode, not by alert: with ``episode`` keys (alerts of
    one series less than a horizon apart), ``realised_lo``/``realised_hi`` and
    ``gap_lo``/``gap_hi`` (stated minus realised) are ``1 - alpha`` bootstrap intervals over
    resolved episodes, and ``episodes`` counts them."""
    resolved = [r for r in rows if r[2] is not None]
    hits = [is_hit(outcome_result(r[0], r[2])) for r in resolved]
    stated = float(np.mean([r[1] for r in resolved])) if resolved else None
    realised = float(np.mean(hits)) if resolved else None
    out = {"sent": len(rows), "resolved": len(resolved), "hits": int(sum(hits)),
           "expired": sum(r[2] not in (UP, DOWN) for r in resolved),
           "stated": stated, "realised": realised,
           "stated_minus_realised": None if stated is None else stated - realised}
    if resolved and all(len(r) > 3 for r in resolved):
        keys = list(dict.fromkeys(r[3] for r in resolved))
        which = np.array([keys.index(r[3]) for r in resolved])
        p_stated = np.array([r[1] for r in resolved], float)
        h = np.array(hits, float)
        rng = np.random.default_rng(seed)
        draw = rng.integers(0, len(keys), size=(n_boot, len(keys)))
        counts = np.stack([np.bincount(d, minlength=len(keys)) for d in draw])[:, which]
        real = (counts * h).sum(axis=1) / counts.sum(axis=1)
        gap = (counts * (p_stated - h)).sum(axis=1) / counts.sum(axis=1)
        q = (alpha / 2, 1 - alpha / 2)
        out.update(episodes=len(keys),
                   realised_lo=float(np.quantile(real, q[0])),
                   realised_hi=float(np.quantile(real, q[1])),
                   gap_lo=float(np.quantile(gap, q[0])), gap_hi=float(np.quantile(gap, q[1])))
    return out


def _episodes(times: list[datetime], horizon_seconds: float, prefix: str) -> list[str]:
    """An episode key per time (sorted): a new episode when the gap exceeds one horizon."""
    keys, k, last = [], 0, None
    for t in times:
        if last is not None and (t - last).total_seconds() > horizon_seconds:
            k += 1
        keys.append(f"{prefix} {k}")
        last = t
    return keys


def _series_rows(session, settings: Settings, asset: str, target: str,
                 since: datetime | None, until: datetime | None):
    """(served rows with their outcome, all outcomes of the series, pending count)."""
    where = [Prediction.asset == asset, Prediction.target == target, Prediction.served]
    if since is not None:
        where.append(Prediction.candle_time >= since)
    if until is not None:
        where.append(Prediction.candle_time <= until)
    preds = session.exec(select(Prediction.candle_time, Prediction.prob_up, Prediction.prob_down,
                                Prediction.alert_held).where(*where)
                         .order_by(Prediction.candle_time, Prediction.id)).all()
    outcomes = dict(session.exec(select(Outcome.candle_time, Outcome.label).where(
        Outcome.asset == asset, Outcome.target == target)).all())
    return preds, outcomes


def _series(session, settings: Settings, asset: str, target: str, *, since, until,
            n_boot: int, bins: int, statuses: tuple[str, ...] = QUEUED,
            ) -> tuple[dict[str, Any], dict[str, np.ndarray] | None, list]:
    cfg = settings.target(target)
    step = timeframe_to_timedelta(settings.asset(asset).timeframe).total_seconds()
    preds, outcomes = _series_rows(session, settings, asset, target, since, until)
    served: dict[datetime, tuple[float, float, str | None]] = {}
    for t, p_up, p_down, held in preds:  # one served forecast per candle: the first recorded
        served.setdefault(t, (p_up, 1.0 - p_up if p_down is None else p_down, held))
    resolved = sorted(t for t in served if t in outcomes)
    info: dict[str, Any] = {
        "asset": asset, "target": target, "horizon": cfg.horizon, "pct": cfg.pct,
        "served": len(served), "pending": len(served) - len(resolved),
        "held": sum(v[2] is not None for v in served.values()),
        "first": min(served).isoformat() if served else None,
        "last": max(served).isoformat() if served else None,
    }
    alert_rows = session.exec(select(AlertOutbox.candle_time, AlertOutbox.payload).where(
        AlertOutbox.kind == "signal", AlertOutbox.asset == asset, AlertOutbox.target == target,
        AlertOutbox.status.in_(statuses))).all()
    per_candle = {t: payload for t, payload in alert_rows
                  if (since is None or t >= since) and (until is None or t <= until)}
    ordered = sorted(per_candle.items())
    episodes = _episodes([t for t, _ in ordered], cfg.horizon * step, f"{asset} {target}")
    alerts = [(str(p["direction"]), float(p["probability"]), outcomes.get(t), e)
              for (t, p), e in zip(ordered, episodes, strict=True)]
    info["alerts"] = _alerts(alerts)
    if len(resolved) < 2:
        info["scores"] = None
        return info, None, alerts
    t0 = min(min(outcomes), resolved[0])
    pos = lambda ts: np.array([round((t - t0).total_seconds() / step) for t in ts])  # noqa: E731
    hist_t = sorted(outcomes)
    y_hist = onehot3(np.array([outcomes[t] for t in hist_t]), up=UP, down=DOWN)
    p_eval = pos(resolved)
    ref3 = causal_base_rate(y_hist, pos(hist_t), p_eval, cfg.horizon,
                            prior=np.full(3, 1 / 3), strength=3.0)
    y3 = onehot3(np.array([outcomes[t] for t in resolved]), up=UP, down=DOWN)
    p_up = np.array([served[t][0] for t in resolved], float)
    p_down = np.array([served[t][1] for t in resolved], float)
    probs = np.column_stack([p_up, p_down, np.clip(1.0 - p_up - p_down, 0.0, 1.0)])
    info["scores"] = _score(y3, probs, ref3, cfg.horizon, n_boot=n_boot, bins=bins)
    return info, {"y3": y3, "probs": probs, "ref3": ref3}, alerts


def served_report(engine: Engine, settings: Settings, *, assets: list[str] | None = None,
                  targets: list[str] | None = None, since: datetime | None = None,
                  until: datetime | None = None, n_boot: int = 500, bins: int = 10,
                  alert_statuses: tuple[str, ...] = QUEUED) -> dict[str, Any]:
    """The report as plain data: ``{"series": [...], "pooled": {...}, "tolerance", "min_bin"}``.
    ``assets``/``targets`` restrict it (default: every configured one); ``since``/``until`` the
    candle times of the served predictions; ``alert_statuses`` the outbox statuses of the
    signal alerts counted (default: queued or sent; add :data:`UNDELIVERED` for stale ones)."""
    symbols = [settings.asset(a).symbol for a in assets] if assets else [
        a.symbol for a in settings.assets]
    keys = [settings.target(t).key for t in targets] if targets else [
        t.key for t in settings.targets]
    series, arrays = [], defaultdict(list)
    horizons = []
    with session_scope(engine, readonly=True) as session:
        for asset in symbols:
            for key in keys:
                info, data, alerts = _series(session, settings, asset, key, since=since,
                                             until=until, n_boot=n_boot, bins=bins,
                                             statuses=alert_statuses)
                series.append(info)
                arrays["alerts"] += alerts
                if data is not None:
                    horizons.append(info["horizon"])
                    for name, value in data.items():
                        arrays[name].append(value)
    pooled: dict[str, Any] = {"asset": POOLED, "target": POOLED,
                              "served": sum(s["served"] for s in series),
                              "pending": sum(s["pending"] for s in series),
                              "held": sum(s["held"] for s in series),
                              "alerts": _alerts(arrays["alerts"]), "scores": None}
    if horizons:
        pooled["scores"] = _score(np.concatenate(arrays["y3"]), np.concatenate(arrays["probs"]),
                                  np.concatenate(arrays["ref3"]), max(horizons), n_boot=n_boot,
                                  bins=bins)
    return {"series": series, "pooled": pooled, "tolerance": TOLERANCE, "min_bin": MIN_BIN,
            "alert_statuses": list(alert_statuses),
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None}


# ------------------------------------------------------------------------------------- figure
def reliability_png(section: dict[str, Any], title: str, *, dpi: int = 90) -> bytes | None:
    """The reliability diagram of one section (a series or the pooled one): P(up first) and
    P(down first) against their observed frequency, marker area by count, with the counts per
    bin below (:func:`signalcast.notifier.charts.reliability_chart`, which the weekly summary
    sends too); None when the section has no resolved outcome."""
    scores = section.get("scores")
    if not scores:
        return None
    from signalcast.notifier.charts import reliability_chart

    return reliability_chart(scores, title, tolerance=TOLERANCE, dpi=dpi)
