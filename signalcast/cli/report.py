"""``signalcast report``: what was served, judged on the outcomes, in 80 columns, and as a
self-contained HTML file, a directory of PNG diagrams or JSON.

Thin: :func:`signalcast.ops.report.served_report` computes; this prints and writes.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from signalcast.cli.common import ConfigOpt, console, parse_time, settings_and_engine


def _f(value: float | None, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def _short(value: float) -> str:
    """``.49`` for 0.49: two decimals without the leading zero."""
    return f"{value:.2f}".replace("0.", ".", 1)


def _name(section: dict[str, Any]) -> str:
    if section["asset"] == "pooled":
        return "pooled"
    return f"{section['asset']} {section['target']}"


def _alerts_cell(alerts: dict[str, Any]) -> str:
    """``13: 72→15%``: sent, stated and realised (on the resolved ones)."""
    if not alerts["resolved"]:
        return f"{alerts['sent']}: -" if alerts["sent"] else "0"
    return f"{alerts['sent']}: {100 * alerts['stated']:.0f}→{alerts['realised']:.0%}"


def _table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=0, pad_edge=False,
                  show_edge=False, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=True)
    return table


def _sections(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [*report["series"], report["pooled"]]


def print_report(report: dict[str, Any], out: Console = console, *,
                 every_bin: bool = False) -> None:
    """The summary tables (P(up first) skill, three-outcome skill) and the pooled reliability
    table (every series' with ``every_bin``), none wider than 80 columns."""
    skill = _table("served P(up first): Brier vs causal base rate, AUC vs shift null",
                   ("series", "n", "Brier", "base", "skill", "low", "AUC (null)", "alerts"))
    three = _table("three outcomes (up, down, none): frequency and Brier vs base rate",
                   ("series", "up/down/none", "Brier", "base", "skill", "low", "held", "pending"))
    for s in _sections(report):
        sc = s["scores"]
        style = "bold" if s["asset"] == "pooled" else None
        if sc is None:
            skill.add_row(_name(s), "0", "-", "-", "-", "-", "-", _alerts_cell(s["alerts"]),
                          style=style)
            three.add_row(_name(s), "-", "-", "-", "-", "-", str(s["held"]), str(s["pending"]),
                          style=style)
            continue
        auc = "-" if sc["auc"] is None else (f"{sc['auc']:.2f} ({_short(sc['auc_null_mean'])}"
                                              f"±{_short(sc['auc_null_sd'])})")
        skill.add_row(_name(s), str(sc["n"]), _f(sc["brier_up"], ".4f"),
                      _f(sc["base_brier_up"], ".4f"),
                      f"{sc['skill_up']:+.3f}", f"{sc['skill_up_lower']:+.3f}", auc,
                      _alerts_cell(s["alerts"]), style=style)
        freq = sc["frequency"]
        three.add_row(_name(s), f"{freq['up']:.2f}/{freq['down']:.2f}/{freq['none']:.2f}",
                      _f(sc["brier3"], ".4f"), _f(sc["base_brier3"], ".4f"),
                      f"{sc['skill3']:+.3f}", f"{sc['skill3_lower']:+.3f}", str(s["held"]),
                      str(s["pending"]), style=style)
    out.print(skill)
    out.print("low: 5% block-bootstrap bound of the skill (block = horizon); alerts: sent: "
              "mean stated→share realised on resolved outcomes (expired = miss)")
    out.print(three)
    for s in (_sections(report) if every_bin else [report["pooled"]]):
        print_reliability(s, report, out)


def print_reliability(section: dict[str, Any], report: dict[str, Any],
                      out: Console = console) -> None:
    sc = section["scores"]
    if sc is None:
        out.print(f"{_name(section)}: no resolved served prediction yet")
        return
    out.print(f"{_name(section)}: served reliability (ok: within {report['tolerance']} of "
              f"observed, judged from {report['min_bin']} predictions)")
    table = _table("", ("bin", "up n", "pred", "obs", "ok", "down n", "pred", "obs", "ok"))
    mark = {True: "yes", False: "NO", None: ""}
    for up, down in zip(sc["reliability_up"], sc["reliability_down"], strict=True):
        table.add_row(f"{up['lo']:.1f}-{up['hi']:.1f}", str(up["n"]), _f(up["predicted"]),
                      _f(up["observed"]), mark[up["within"]], str(down["n"]),
                      _f(down["predicted"]), _f(down["observed"]), mark[down["within"]])
    out.print(table)
    for key, name in (("bins_up", "P(up first)"), ("bins_down", "P(down first)")):
        judged = sc[key]
        out.print(f"{name}: {judged['within']} of {judged['judged']} judged bins within "
                  f"{report['tolerance']}")


def _stem(section: dict[str, Any]) -> str:
    return _name(section).replace("/", "-").replace(" ", "_")


def write_pngs(report: dict[str, Any], directory: Path) -> list[Path]:
    from signalcast.ops.report import reliability_png

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for s in _sections(report):
        png = reliability_png(s, _name(s))
        if png is not None:
            written.append(directory / f"{_stem(s)}_reliability.png")
            written[-1].write_bytes(png)
    return written


def write_html(report: dict[str, Any], path: Path, title: str) -> Path:
    """One self-contained file: the summary tables, then each section's reliability table
    and diagram (PNG embedded as base64)."""
    from signalcast.ops.report import reliability_png

    record = Console(record=True, width=100, file=io.StringIO())
    print_report(report, record, every_bin=False)
    parts = [f"<h1>{html.escape(title)}</h1>", f"<pre>{html.escape(record.export_text())}</pre>"]
    for s in _sections(report):
        parts.append(f"<h2>{html.escape(_name(s))}</h2>")
        section = Console(record=True, width=100, file=io.StringIO())
        print_reliability(s, report, section)
        parts.append(f"<pre>{html.escape(section.export_text())}</pre>")
        png = reliability_png(s, _name(s))
        if png is not None:
            parts.append('<img alt="reliability" src="data:image/png;base64,'
                         f'{base64.b64encode(png).decode()}">')
    style = "body{font-family:sans-serif;margin:2em}pre{font-size:12px}img{max-width:100%}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>"
                    f"{html.escape(title)}</title><style>{style}</style></head><body>"
                    + "\n".join(parts) + "</body></html>")
    return path


def report(
    asset: Annotated[list[str] | None, typer.Option("--asset", "-a",
                                                    help="asset(s) (default: all configured)")]
    = None,
    target: Annotated[list[str] | None, typer.Option("--target", "-t",
                                                     help="target key(s), e.g. 2pct_72")] = None,
    since: Annotated[str | None, typer.Option(help="first served candle (ISO, UTC)")] = None,
    until: Annotated[str | None, typer.Option(help="last served candle (ISO, UTC)")] = None,
    bins: Annotated[int, typer.Option(min=2, max=50, help="reliability bins")] = 10,
    every_bin: Annotated[bool, typer.Option("--every-series", help="print every series' "
                                            "reliability table, not only the pooled one")]
    = False,
    html_path: Annotated[Path | None, typer.Option("--html", help="write FILE.html")] = None,
    png_dir: Annotated[Path | None, typer.Option("--png", help="write reliability PNGs to DIR")]
    = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the data as JSON")]
    = None,
    config: ConfigOpt = None,
) -> None:
    """What was served, judged on what happened: reliability, Brier skill vs the causal base
    rate, AUC vs its null and alerts stated vs realised, per (asset, target) and pooled."""
    from signalcast.cli.admin import database_errors
    from signalcast.ops.report import served_report

    settings, engine = settings_and_engine(config)
    with database_errors(settings):
        data = served_report(engine, settings, assets=asset, targets=target,
                             since=parse_time(since) if since else None,
                             until=parse_time(until) if until else None, bins=bins)
    print_report(data, every_bin=every_bin)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=2, default=str))
        console.print(f"JSON written to {json_path}")
    if html_path:
        write_html(data, html_path, "signalcast: what was served")
        console.print(f"HTML written to {html_path}")
    if png_dir:
        written = write_pngs(data, png_dir)
        console.print(f"{len(written)} PNG files written to {png_dir}")
