"""The HTML of each page: plain functions from data to a string, every value escaped.

One layout (:func:`layout`): a header with the navigation, inline CSS, no script."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from signalcast.core.queues import QUEUES
from signalcast.db.tables import AlertOutbox, ModelEvent, TaskRun
from signalcast.web import queries, svg

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#111827;
background:#f3f4f6}
header{background:#111827;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center}
header a{color:#d1d5db;text-decoration:none}header a:hover{color:#fff}
header strong{font-size:16px;margin-right:12px}
main{padding:16px 24px;max-width:1180px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:12px 16px;
margin-bottom:16px}
h1{font-size:20px;margin:4px 0 12px}h2{font-size:16px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;
border-bottom:1px solid #f3f4f6;vertical-align:top}th{color:#6b7280;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#15803d}.warn{color:#b45309}.bad{color:#b91c1c}.muted{color:#6b7280}
.grid{display:grid;grid-template-columns:380px 1fr;gap:16px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#f9fafb;border:1px solid #e5e7eb;
border-radius:6px;padding:8px 14px;min-width:120px}.card b{display:block;font-size:20px}
svg text.axis,svg text.legend{font-size:11px;fill:#4b5563}
code{font-size:12px}table+h2{margin-top:18px}time{white-space:nowrap}
pre{font-size:11px;white-space:pre-wrap;margin:4px 0}
"""


def layout(title: str, body: str) -> str:
    nav = "".join(f'<a href="{href}">{name}</a>' for href, name in (
        ("/", "Overview"), ("/alerts", "Alerts"), ("/tasks", "Task runs")))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)} · signalcast</title><style>{CSS}</style></head><body>'
            f'<header><strong>signalcast</strong>{nav}</header><main><h1>{escape(title)}</h1>'
            f'{body}</main></body></html>')


def _when(value: datetime | str | None) -> str:
    if value is None:
        return '<span class="muted">-</span>'
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return f'<time datetime="{value.isoformat()}">{value:%Y-%m-%d %H:%M} UTC</time>'


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset(),
           table_id: str = "") -> str:
    def cell(tag: str, i: int, value: str) -> str:
        return f'<{tag}{" class=num" if i in numeric else ""}>{value}</{tag}>'

    head = "".join(cell("th", i, escape(h)) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>"
                   for r in rows)
    if not rows:
        body = f'<tr><td colspan="{len(headers)}" class="muted">none</td></tr>'
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def target_href(asset: str, target: str) -> str:
    return "/target?" + urlencode({"asset": asset, "target": target})


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


# -- overview ------------------------------------------------------------------------------------


def overview_page(status: dict[str, Any], targets: list[str],
                  held: dict[tuple[str, str], int]) -> str:
    """``held``: per (asset, target), served predictions whose signal the skill gate held."""
    cluster = status["cluster"]
    alerts_today = status.get("alerts_today", {})
    cards = "".join(f'<div class="card" id="card-{key}">{escape(name)}<b>{value}</b></div>'
                    for key, name, value in (
                        ("champions", "champions",
                         f"{status['champions']} / {status['expected_champions']}"),
                        ("sent", "alerts sent", status["alerts"].get("sent", 0)),
                        ("held", "held by the skill gate", sum(held.values())),
                        ("waiting", "alerts waiting",
                         sum(status["alerts"].get(k, 0) for k in ("pending", "sending"))),
                        ("sent-today", "sent today", alerts_today.get("sent", 0)),
                        ("running", "tasks running", status["running_tasks"]),
                        ("predictions", "predictions", status["rows"].get("predictions", 0))))
    parts = [f'<section><div class="cards">{cards}</div></section>', _cluster(cluster)]
    rows = []
    for a in status["assets"]:
        for target in targets:
            champion = a["champions"].get(target)
            href = escape(target_href(a["asset"], target))
            rows.append([
                escape(a["asset"]),
                f'<a href="{href}">{escape(target)}</a>',
                escape(champion) if champion else '<span class="bad">none: train one</span>',
                _when(a["last_candle"]),
                str(len(a.get("gaps", []))) if a.get("gaps") else "0"])
    parts.append("<section><h2>Assets and targets</h2>" + _table(
        ["asset", "target", "champion", "last closed candle", "open gaps"], rows,
        table_id="assets") + "</section>")
    served = [[escape(t["asset"]), escape(t["target"]), str(t["predictions"]),
               str(t["resolved"]), str(t["expired"]), _pct(t["hit_rate"]),
               str(t["alerts_sent"]), str(held.get((t["asset"], t["target"]), 0))]
              for t in status["targets"]]
    parts.append("<section><h2>Served predictions</h2>" + _table(
        ["asset", "target", "predictions", "resolved", "expired", "hit rate", "signals sent",
         "held"], served, numeric={2, 3, 4, 5, 6, 7}, table_id="served") + "</section>")
    alert_rows = [[escape(k), str(v)] for k, v in sorted(status["alerts"].items())]
    task_rows = [[escape(name)] + [str(counts.get(s, 0)) for s in ("running", "done", "failed")]
                 for name, counts in sorted(status["tasks"].items())]
    parts.append('<div class="grid"><section><h2>Alerts by status</h2>'
                 + _table(["status", "alerts"], alert_rows, numeric={1}, table_id="alerts")
                 + '</section><section><h2>Task runs</h2>'
                 + _table(["task", "running", "done", "failed"], task_rows, numeric={1, 2, 3},
                          table_id="tasks") + "</section></div>")
    parts.append(f'<p class="muted">database: <code>{escape(status["database"])}</code></p>')
    return layout("Overview", "".join(parts))


def _cluster(cluster: dict[str, Any]) -> str:
    if cluster["broker"] == "embedded":
        head = "embedded (no SIGNALCAST_BROKER_URL): tasks run inside the command starting them"
    elif cluster["broker_error"]:
        head = f'<span class="bad">Redis does not answer: {escape(cluster["broker_error"])}</span>'
    else:
        head = f"redis, {len(cluster['workers'])} worker(s) answering"
    tick = _when(cluster["last_tick"]) if cluster["last_tick"] else \
        '<span class="warn">none yet</span>'
    if cluster.get("tick_late"):
        tick = f'<span class="warn">{tick}: late, is a scheduler running?</span>'
    failed = cluster.get("failed_tasks") or {}
    failed_line = ", ".join(f"{escape(n)} {c}" for n, c in sorted(failed.items()))
    per_queue = cluster.get("workers_per_queue") or {}
    queue_rows = [[q, str(per_queue.get(q, 0)), str(cluster["queues"].get(q, 0))]
                  for q in QUEUES]
    workers = "; ".join(f"{escape(h)} ({escape(', '.join(qs))})"
                        for h, qs in sorted(cluster["workers"].items())) or "none listed"
    return (f'<section id="cluster"><h2>Cluster</h2><p>broker: {head}</p>'
            f'<p>last tick: <span id="last-tick">{tick}</span></p>'
            + (f'<p class="bad">failed task runs: {failed_line}</p>' if failed else "")
            + ("" if cluster["broker"] == "embedded" or cluster["broker_error"] else
               _table(["queue", "workers", "waiting"], queue_rows, numeric={1, 2},
                      table_id="queues") + f'<p class="muted">workers: {workers}</p>')
            + "</section>")


# -- one (asset, target) ---------------------------------------------------------------------


def target_page(asset: str, target: str, threshold: float, series: queries.PriceSeries,
                bins: list[queries.ReliabilityBin], n_resolved: int,
                pairs: list[queries.PairCurve], checks: list[dict[str, Any]],
                events: list[ModelEvent], versions: list[Any]) -> str:
    sent = sum(1 for a in series.alerts if a[3] == "sent")
    chart = svg.price_svg(series.times, series.closes, series.probabilities, series.alerts,
                          threshold, series.held)
    parts = [f'<section id="price"><h2>Price, served probabilities and alerts</h2>'
             f'<p class="muted"><span id="n-candles">{len(series.times)}</span> newest candles, '
             f'<span id="n-served">{len(series.probabilities)}</span> served predictions '
             f'(green: P(up first), red: P(down first)), <span id="n-signals">'
             f'{len(series.alerts)}</span> signal alerts ({sent} sent; ▲ up, ▼ down), '
             f'<span id="n-held">{len(series.held)}</span> held by the skill gate (grey '
             f'rings); dashed: the alert threshold {threshold:.0%}</p>{chart}</section>']
    bin_rows = [[b.direction, f"{b.low:.0%}-{b.high:.0%}", str(b.n),
                 f"{b.mean_predicted:.3f}", f"{b.observed:.3f}"] for b in bins]
    by_direction = {d: [(b.mean_predicted, b.observed, b.n) for b in bins if b.direction == d]
                    for d in queries.DIRECTIONS}
    parts.append(
        f'<div class="grid"><section id="reliability"><h2>Reliability</h2>'
        f'<p class="muted">served probabilities of each direction against how often it was '
        f'touched first, <span id="n-resolved">{n_resolved}</span> resolved predictions (an '
        f'expiry is a miss for both)</p>' + svg.reliability_svg(by_direction)
        + "</section><section><h2>Reliability bins</h2>"
        + _table(["direction", "bin", "n", "mean predicted", "share happened"], bin_rows,
                 numeric={2, 3, 4}, table_id="bins") + "</section></div>")
    series_lines: list[tuple[str, list[float]]] = []
    if pairs:
        series_lines.append((f"{pairs[0].champion} (champion)",
                             max((p.running_champion for p in pairs), key=len)))
    for p in pairs:
        series_lines.append((p.challenger, p.running_challenger))
    pair_rows = [[escape(p.champion), escape(p.challenger), str(p.n),
                  f"{p.brier_champion:.4f}", f"{p.brier_challenger:.4f}",
                  f"{(p.brier_challenger or 0) - (p.brier_champion or 0):+.4f}"] for p in pairs]
    check_rows = [[_when(c["evaluated_at"]), str(c["champion_id"]), str(c["challenger_id"]),
                   str(c["n"]), escape(c["decision"]),
                   "-" if c["e_value"] is None else f"{c['e_value']:.3g}",
                   "-" if c["threshold"] is None else f"{c['threshold']:.3g}"] for c in checks]
    parts.append(
        '<section id="compare"><h2>Champion against challengers</h2><p class="muted">'
        'running mean three-outcome Brier score (up first, down first, neither; lower is '
        'better) on the resolved outcomes both predicted</p>'
        + svg.curves_svg(series_lines, "shared resolved outcomes, oldest first")
        + _table(["champion", "challenger", "shared", "Brier champion", "Brier challenger",
                  "difference"], pair_rows, numeric={2, 3, 4, 5}, table_id="pairs")
        + "<h2>Promotion checks</h2>"
        + '<p class="muted">a challenger is promoted when its always-valid e-value reaches the '
          "threshold (1 / level; checked daily on the whole record, false promotions stay "
          "within the configured significance)</p>"
        + _table(["evaluated", "champion id", "challenger id", "shared", "decision", "e-value",
                  "threshold"], check_rows, numeric={1, 2, 3, 5, 6}, table_id="checks")
        + "</section>")
    version_rows = [[str(v.id), escape(v.label), escape(v.role), _when(v.created_at),
                     _metric(v.metrics, "auc"), _metric(v.metrics, "brier"), _skill(v.metrics)]
                    for v in versions]
    event_rows = [[_when(e.created_at), escape(e.event), escape(e.from_label or "-"),
                   escape(e.to_label or "-"), escape(e.actor), escape(e.reason)]
                  for e in events]
    parts.append('<section id="history"><h2>Model versions</h2>'
                 + _table(["id", "version", "role", "trained", "AUC", "Brier", "skill"],
                          version_rows, numeric={0, 4, 5, 6}, table_id="versions")
                 + "<h2>History: promotions, rollbacks, retrainings</h2>"
                 + _table(["when", "event", "from", "to", "by", "why"], event_rows,
                          table_id="events") + "</section>")
    return layout(f"{asset} · {target}", "".join(parts))


def _metric(metrics: dict[str, Any], key: str) -> str:
    value = metrics.get(key)
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def _skill(metrics: dict[str, Any]) -> str:
    """Any skill figure training stored (e.g. Brier skill against the base rate)."""
    for key in sorted(metrics):
        if "skill" in key and isinstance(metrics[key], int | float):
            return f"{metrics[key]:.3f}"
    return "-"


# -- logs ----------------------------------------------------------------------------------------


def alerts_page(rows: list[AlertOutbox], status: str | None) -> str:
    table = _table(["id", "queued", "chat", "kind", "asset", "target", "candle", "status",
                    "attempts", "sent", "error"],
                   [[str(r.id), _when(r.created_at), escape(r.chat_id), escape(r.kind),
                     escape(r.asset), escape(r.target), _when(r.candle_time),
                     f'<span class="{_status_class(r.status)}">{escape(r.status)}</span>',
                     str(r.attempts), _when(r.sent_at), escape(r.last_error or "")]
                    for r in rows], numeric={0, 8}, table_id="alert-log")
    return layout("Alerts", _filters("/alerts", status, ("pending", "sent", "failed",
                                                         "skipped"))
                  + f"<section><p class=muted>newest {len(rows)} (at most "
                    f"{queries.LOG_LIMIT})</p>{table}</section>")


def tasks_page(rows: list[TaskRun], status: str | None) -> str:
    table = _table(["id", "task", "args", "status", "attempts", "started", "finished",
                    "progress or error"],
                   [[str(r.id), escape(r.name), f"<code>{escape(_args(r.args))}</code>",
                     f'<span class="{_status_class(r.status)}">{escape(r.status)}</span>',
                     str(r.attempts), _when(r.started_at), _when(r.finished_at),
                     _error_cell(r.error, r.progress)] for r in rows],
                   numeric={0, 4}, table_id="task-log")
    return layout("Task runs", _filters("/tasks", status, ("running", "done", "failed"))
                  + f"<section><p class=muted>newest {len(rows)} (at most "
                    f"{queries.LOG_LIMIT})</p>{table}</section>")


def _error_cell(error: str | None, progress: str | None) -> str:
    """An error's first line, the rest (the traceback) folded away; else the progress."""
    if not error:
        return escape(progress or "")
    first, _, rest = error.partition("\n")
    folded = f"<details><summary>traceback</summary><pre>{escape(rest)}</pre></details>" \
        if rest.strip() else ""
    return f'<span class="bad">{escape(first)}</span>{folded}'


def _args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in args.items())[:120]


def _status_class(status: str) -> str:
    return {"sent": "ok", "done": "ok", "failed": "bad", "pending": "warn",
            "running": "warn"}.get(status, "muted")


def _filters(path: str, current: str | None, statuses: tuple[str, ...]) -> str:
    links = [f'<a href="{path}">{"<b>all</b>" if current is None else "all"}</a>']
    for s in statuses:
        text = f"<b>{s}</b>" if s == current else s
        links.append(f'<a href="{path}?{urlencode({"status": s})}">{text}</a>')
    return '<p class="filters">show: ' + " · ".join(links) + "</p>"


def message_page(title: str, message: str, form: bool = False) -> str:
    login = ('<form method="post" action="/login"><label>Access token '
             '<input type="password" name="token" autofocus></label> '
             '<button type="submit">Sign in</button></form>') if form else ""
    return layout(title, f"<section><p>{escape(message)}</p>{login}</section>")
