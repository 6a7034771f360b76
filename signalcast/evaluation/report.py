"""The comparison as JSON, and as a report with plots: one self-contained HTML file (PNG images
embedded as base64) or a directory of PNG files.

Plots per (asset, target): the reliability curve of every family and of the oracle, the ROC
curves, and, when an ``hmm`` family exposes filtered ``regime_probabilities(X)``, its most
probable regime shaded over the close price (otherwise the report says why it is missing).
Matplotlib is used through ``Figure`` and its Agg canvas only: no pyplot, no global backend.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signalcast.evaluation.metrics import Scores
from signalcast.evaluation.walkforward import SeriesEvaluation

REGIME_FAMILY = "hmm"
ORACLE = "oracle"


def _row(ev: SeriesEvaluation, family: str, scores: Scores, raw: Scores | None,
         seconds: float | None) -> dict:
    alerts = scores.alerts
    return {
        "asset": ev.asset, "target": ev.target.key, "family": family, "n": scores.n,
        "base_rate_up": scores.base_rate_up, "auc": scores.auc, "brier": scores.brier,
        "log_loss": scores.log_loss, "ece": scores.ece, "threshold": alerts.threshold,
        "alerts": alerts.n_alerts, "precision": alerts.precision, "recall": alerts.recall,
        "auc_raw": None if raw is None else raw.auc,
        "brier_raw": None if raw is None else raw.brier, "seconds": seconds,
    }


def comparison_rows(evaluations: Sequence[SeriesEvaluation]) -> list[dict]:
    """One flat row per (asset, target, family), plus an ``oracle`` row where one was scored.
    ``auc``/``brier`` score the served (calibrated) probabilities, ``*_raw`` the model's own."""
    rows = []
    for ev in evaluations:
        rows += [_row(ev, r.family, r.scores, r.raw_scores, r.fit_seconds) for r in ev.results]
        if ev.oracle is not None:
            rows.append(_row(ev, ORACLE, ev.oracle, None, None))
    return rows


def to_json(evaluations: Sequence[SeriesEvaluation], meta: dict | None = None) -> dict[str, Any]:
    """Plain data: the comparison rows and, per (asset, target), full scores (alerts per
    direction, reliability bins), fold records, calibrators and skipped folds."""
    series = []
    for ev in evaluations:
        series.append({
            "asset": ev.asset, "target": ev.target.key, "horizon": ev.target.horizon,
            "pct": ev.target.pct, "alert_threshold": ev.target.alert_threshold,
            "embargo": ev.plan.embargo, "folds": ev.fold_records, "skipped": ev.plan.skipped,
            "oracle": None if ev.oracle is None else asdict(ev.oracle),
            "families": {r.family: {"params": r.params, "scores": asdict(r.scores),
                                    "raw_scores": asdict(r.raw_scores), "fold_auc": r.fold_auc,
                                    "calibrators": [c.to_dict() for c in r.calibrators],
                                    "seconds": r.fit_seconds}
                         for r in ev.results},
        })
    return {"generated": datetime.now(UTC).isoformat(timespec="seconds"), **(meta or {}),
            "rows": comparison_rows(evaluations), "series": series}


def write_json(evaluations: Sequence[SeriesEvaluation], path: Path,
               meta: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(evaluations, meta), indent=2, default=str))
    return path


# ------------------------------------------------------------------------------------- figures
def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=90, layout="constrained")


def _scored(ev: SeriesEvaluation) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, y, p) for every family and the oracle, on the OOF rows."""
    out = []
    for family, rows in ev.oof.groupby("family", sort=False):
        out.append((str(family), rows["y"].to_numpy(), rows["p_up"].to_numpy()))
    first = ev.oof[ev.oof["family"] == ev.oof["family"].iloc[0]]
    known = np.isfinite(first["oracle_p_up"].to_numpy())
    if known.any():
        out.append((ORACLE, first["y"].to_numpy()[known], first["oracle_p_up"].to_numpy()[known]))
    return out


def calibration_figure(ev: SeriesEvaluation):
    """Reliability curves (left) and ROC curves (right) of every family and the oracle."""
    from sklearn.metrics import roc_curve

    fig = _figure(11, 4.5)
    rel, roc = fig.subplots(1, 2)
    rel.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":", label="coin")
    scores = {r.family: r.scores for r in ev.results} | {ORACLE: ev.oracle}
    for name, y, p in _scored(ev):
        style = {"color": "black", "linestyle": "--"} if name == ORACLE else {}
        bins = [b for b in scores[name].reliability if b.n]
        rel.plot([b.mean_predicted for b in bins], [b.fraction_up for b in bins], marker="o",
                 markersize=3, label=name, **style)
        if len(np.unique(y)) == 2:
            fpr, tpr, _ = roc_curve(y, p)
            roc.plot(fpr, tpr, label=f"{name} ({scores[name].auc:.3f})", **style)
    rel.set(xlabel="predicted P(up)", ylabel="observed fraction up", xlim=(0, 1), ylim=(0, 1),
            title=f"{ev.asset} {ev.target.key}: reliability")
    roc.set(xlabel="false positive rate", ylabel="true positive rate",
            title=f"{ev.asset} {ev.target.key}: ROC (AUC)")
    rel.legend(fontsize=7)
    roc.legend(fontsize=7, loc="lower right")
    return fig


def regime_figure(ev: SeriesEvaluation, family: str = REGIME_FAMILY):
    """The family's most probable filtered regime shaded over the close, or None without one."""
    rows = ev.oof[(ev.oof["family"] == family) & ev.oof["regime"].notna()]
    if rows.empty:
        return None
    result = ev.result(family)
    regimes = rows["regime"].to_numpy().astype(int)
    names = result.regime_names or [f"regime {k}" for k in range(regimes.max() + 1)]
    times = pd.DatetimeIndex(rows["time"])
    fig = _figure(11, 3.8)
    ax = fig.subplots()
    ax.plot(ev.close.index, ev.close.to_numpy(), color="black", linewidth=0.7)
    colors = ("tab:green", "tab:grey", "tab:red", "tab:blue", "tab:orange", "tab:purple")
    for k in np.unique(regimes):
        label = names[k] if k < len(names) else f"regime {k}"
        ax.fill_between(times, 0, 1, where=regimes == k, step="post", alpha=0.25,
                        color=colors[k % len(colors)], transform=ax.get_xaxis_transform(),
                        label=label, linewidth=0)
    for start in rows.groupby("fold")["time"].first().iloc[1:]:
        ax.axvline(start, color="grey", linewidth=0.6, linestyle=":")
    ax.set(title=f"{ev.asset} {ev.target.key}: {family} filtered regime over close "
                 "(out-of-fold rows; blank = unresolved label, no prediction; dotted = fold "
                 "start, each fold has its own fit)",
           ylabel="close")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper left")
    return fig


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _regime_note(evaluations: Sequence[SeriesEvaluation],
                 family: str = REGIME_FAMILY) -> str | None:
    """Why the regime plot is missing, or None when it is drawn."""
    families = {r.family for ev in evaluations for r in ev.results}
    if family not in families:
        return (f"HMM regime plot omitted: no '{family}' family was evaluated "
                "(none registered or not selected).")
    if all(ev.oof.loc[ev.oof["family"] == family, "regime"].isna().all()
           for ev in evaluations):
        return (f"HMM regime plot omitted: the '{family}' family does not expose "
                "regime_probabilities(X).")
    return None


# ------------------------------------------------------------------------------------- outputs
def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 10 else f"{value:.4f}"
    return str(value)


_TABLE_COLUMNS = ("asset", "target", "family", "n", "base_rate_up", "auc", "brier", "log_loss",
                  "ece", "alerts", "precision", "recall", "auc_raw", "brier_raw", "seconds")


def _html_table(rows: list[dict]) -> str:
    head = "".join(f"<th>{c}</th>" for c in _TABLE_COLUMNS)
    body = "".join(
        "<tr{}>{}</tr>".format(' class="oracle"' if r["family"] == ORACLE else "",
                               "".join(f"<td>{html.escape(_fmt(r[c]))}</td>"
                                       for c in _TABLE_COLUMNS))
        for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(evaluations: Sequence[SeriesEvaluation], path: Path, title: str = "",
               regime_family: str = REGIME_FAMILY) -> Path:
    """One self-contained HTML file: the table, then the plots of each (asset, target)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"<h1>{html.escape(title or 'signalcast walk-forward evaluation')}</h1>",
             "<p>Out-of-fold, calibrated P(up) of each family; the oracle knows the hidden "
             "regime (synthetic data only) and is scored on the same rows.</p>",
             _html_table(comparison_rows(evaluations))]
    note = _regime_note(evaluations, regime_family)
    if note:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    for ev in evaluations:
        parts.append(f"<h2>{html.escape(ev.asset)} {html.escape(ev.target.key)}</h2>")
        if ev.plan.skipped:
            parts.append("<p class='note'>Skipped: " + html.escape("; ".join(ev.plan.skipped))
                         + "</p>")
        figures = [calibration_figure(ev), regime_figure(ev, regime_family)]
        for fig in filter(None, figures):
            data = base64.b64encode(_png(fig)).decode()
            parts.append(f'<img alt="plot" src="data:image/png;base64,{data}">')
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
             "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
             "tr.oracle{background:#eef}.note{color:#a60}img{max-width:100%}")
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>signalcast "
                    f"evaluation</title><style>{style}</style></head><body>"
                    + "\n".join(parts) + "</body></html>")
    return path


def write_pngs(evaluations: Sequence[SeriesEvaluation], directory: Path) -> list[Path]:
    """PNG files (plus ``notes.txt`` when a plot is omitted) in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for ev in evaluations:
        stem = f"{ev.asset.replace('/', '-')}_{ev.target.key}" if ev.asset else ev.target.key
        for kind, fig in (("calibration", calibration_figure(ev)), ("regimes", regime_figure(ev))):
            if fig is not None:
                written.append(directory / f"{stem}_{kind}.png")
                written[-1].write_bytes(_png(fig))
    note = _regime_note(evaluations)
    if note:
        (directory / "notes.txt").write_text(note + "\n")
    return written


def write_report(evaluations: Sequence[SeriesEvaluation], path: Path, title: str = "") -> Path:
    """HTML when ``path`` ends in ``.html``/``.htm``, else a directory of PNG files."""
    path = Path(path)
    if path.suffix.lower() in (".html", ".htm"):
        return write_html(evaluations, path, title)
    write_pngs(evaluations, path)
    return path
