"""What ``signalcast status`` shows: per asset the newest candle, open gaps (candles the exchange
did not deliver) and champions; alerts, task runs and row counts. Returned as plain data so the
CLI and the bot render it their own way."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlmodel import select

from signalcast.config import Settings
from signalcast.db.engine import session_scope
from signalcast.db.tables import ModelVersion
from signalcast.services import summary
from signalcast.services.candles import last_candle_time
from signalcast.services.ingest import open_gaps


def collect_status(engine: Engine, settings: Settings) -> dict[str, Any]:
    with session_scope(engine) as session:
        assets = []
        for cfg in settings.assets:
            newest = last_candle_time(session, cfg.symbol, cfg.timeframe)
            champions = session.exec(select(ModelVersion).where(
                ModelVersion.asset == cfg.symbol, ModelVersion.role == "champion")).all()
            assets.append({
                "asset": cfg.symbol, "timeframe": cfg.timeframe,
                "last_candle": newest.isoformat() if newest else None,
                "gaps": open_gaps(session, cfg.symbol, cfg.timeframe),
                "champions": {m.target: f"{m.family} v{m.version} "
                              f"(AUC {m.metrics.get('auc') or float('nan'):.3f})"
                              for m in champions},
            })
        return {
            "database": settings.redacted()["environment"]["database_url"],
            "assets": assets,
            "alerts": summary.alert_counts(session),
            "tasks": summary.task_counts(session),
            "rows": summary.table_counts(session),
            "targets": [vars(s) | {"hit_rate": s.hit_rate}
                        for s in summary.target_summaries(session)],
        }


def render_status(data: dict[str, Any], console: Console, brief: bool = False) -> None:
    table = Table(title="assets")
    for col in ("asset", "last closed candle", "champions", "open gaps"):
        table.add_column(col)
    for a in data["assets"]:
        champions = "\n".join(f"{t}: {c}" for t, c in sorted(a["champions"].items())) or "-"
        table.add_row(a["asset"], a["last_candle"] or "none", champions,
                      _gaps_cell(a.get("gaps", [])))
    console.print(table)
    if data["targets"]:
        results = Table(title="served predictions")
        for col in ("asset", "target", "predictions", "resolved", "hit rate", "alerts sent"):
            results.add_column(col)
        for t in data["targets"]:
            rate = "-" if t["hit_rate"] is None else f"{t['hit_rate']:.0%}"
            results.add_row(t["asset"], t["target"], str(t["predictions"]), str(t["resolved"]),
                            rate, str(t["alerts_sent"]))
        console.print(results)
    if not brief:
        console.print(f"alerts: {data['alerts'] or 'none'}")
        console.print(f"task runs: {data['tasks'] or 'none'}")
        console.print(f"rows: {data['rows']}")
    console.print(f"database: {data['database']}")


def _gaps_cell(gaps: list[dict[str, Any]], show: int = 3) -> str:
    """'none', or each open gap as 'first .. last (N)', at most ``show`` of them."""
    if not gaps:
        return "none"
    lines = [f"{g['first'][:16]} .. {g['last'][:16]} ({g['missing']})" for g in gaps[:show]]
    if len(gaps) > show:
        total = sum(g["missing"] for g in gaps)
        lines.append(f"... {len(gaps)} gaps, {total} candles in all")
    return "\n".join(lines)
