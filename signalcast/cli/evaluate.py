"""``signalcast evaluate``: leak-free walk-forward comparison of the registered model families.

Thin: parses options, calls :mod:`signalcast.evaluation`, prints a table and writes the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from signalcast.cli.common import ConfigOpt, console, load_settings

if TYPE_CHECKING:
    from signalcast.config import Settings


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def benchmarks(evaluations, n_boot: int = 500) -> list[dict[str, Any]]:
    """Per (asset, target, family) row of the comparison: the Brier of the causal base rate
    (the up frequency of the test labels resolved before each row), the Brier skill against it
    with its circular block-bootstrap lower bound, and the AUC's circular label-shift null
    (block and shifts of one horizon, so overlapping labels stay together)."""
    import numpy as np

    from signalcast.evaluation.report import ORACLE
    from signalcast.stats.skill import auc_null, brier, causal_base_rate, skill_test

    out = []
    for ev in evaluations:
        h = ev.target.horizon
        first = ev.oof[ev.oof["family"] == ev.oof["family"].iloc[0]].sort_values("position")
        scored = [(str(f), rows.sort_values("position")) for f, rows in
                  ev.oof.groupby("family", sort=False)]
        known = first[np.isfinite(first["oracle_p_up"].to_numpy(float))]
        if len(known):
            scored.append((ORACLE, known.assign(p_up=known["oracle_p_up"])))
        for family, rows in scored:
            y, p, pos = (rows[k].to_numpy(float) for k in ("y", "p_up", "position"))
            ref = causal_base_rate(y, pos, pos, h)
            test = skill_test(y, p, ref, block=h, n_boot=n_boot)
            row = {"asset": ev.asset, "target": ev.target.key, "family": family,
                   "n": len(y), "base_brier": brier(y, ref), "skill": test.skill,
                   "skill_lower": test.lower, "auc_null_mean": None, "auc_null_sd": None}
            if 0 < y.sum() < len(y):
                null = auc_null(y, p, h)
                row.update(auc_null_mean=null.null_mean, auc_null_sd=null.null_sd)
            out.append(row)
    return out


def print_comparison(evaluations, out: Console = console,
                     bench: list[dict[str, Any]] | None = None) -> None:
    """One table per (asset, target), readable in 80 columns: each family's AUC beside its
    label-shift null, Brier beside the causal base rate (skill and its lower bound), alerts
    and their precision. Log-loss, recall, raw (uncalibrated) figures and fit seconds are in
    the JSON and the HTML report."""
    from signalcast.evaluation.report import ORACLE, comparison_rows

    bench = benchmarks(evaluations) if bench is None else bench
    extra = {(b["asset"], b["target"], b["family"]): b for b in bench}
    rows = comparison_rows(evaluations)
    series = list(dict.fromkeys((r["asset"], r["target"]) for r in rows))
    for asset, target in series:
        mine = [r for r in rows if (r["asset"], r["target"]) == (asset, target)]
        base = extra.get((asset, target, mine[0]["family"]), {}).get("base_brier")
        out.print(f"{asset} {target}: out-of-fold calibrated P(up); base-rate Brier "
                  f"{_num(base, 4)}", markup=False, highlight=False)
        table = Table(box=box.SIMPLE_HEAD, padding=0)
        for col in ("family", "rows", "AUC", "null", "Brier", "skill", "low", "alerts",
                    "prec."):
            table.add_column(col, justify="left" if col == "family" else "right",
                             no_wrap=True)
        for r in mine:
            b = extra.get((asset, target, r["family"]), {})
            null = ("-" if b.get("auc_null_mean") is None else
                    f"{b['auc_null_mean']:.2f}±{b['auc_null_sd']:.2f}")
            table.add_row(r["family"], str(r["n"]), _num(r["auc"]), null, _num(r["brier"], 4),
                          _signed(b.get("skill")), _signed(b.get("skill_lower")),
                          str(r["alerts"]), _num(r["precision"], 2),
                          style="bold cyan" if r["family"] == ORACLE else None)
        out.print(table)
    out.print("null: AUC under circular label shifts (mean±sd); skill: 1 - Brier / base-rate "
              "Brier, low: its 5% block-bootstrap bound (block = horizon)")


def evaluate(
    asset: Annotated[list[str] | None, typer.Option("--asset", "-a",
                                                    help="asset(s) (default: all configured)")]
    = None,
    target: Annotated[list[str] | None, typer.Option("--target", "-t",
                                                     help="target key(s), e.g. 2pct_72")] = None,
    family: Annotated[list[str] | None, typer.Option("--family", "-f",
                                                     help="family(ies) (default: registered)")]
    = None,
    folds: Annotated[int, typer.Option(min=1, help="walk-forward test folds")] = 5,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the comparison JSON")]
    = None,
    report_path: Annotated[Path | None, typer.Option(
        "--report", help="report: FILE.html (self-contained) or a directory for PNG files")]
    = None,
    predictions_path: Annotated[Path | None, typer.Option(
        "--predictions", help="write FILE.csv: time,asset,target,family,fold,p_up,p_down,"
        "outcome per test candle, by training's selection (its pick again as 'champion')")]
    = None,
    synthetic_periods: Annotated[int | None, typer.Option(
        "--synthetic", min=500, help="evaluate on N fresh synthetic candles (no database), "
        "with the oracle")] = None,
    config: ConfigOpt = None,
) -> None:
    """Walk-forward evaluation (purged, embargoed, calibrated on a later fold) of every
    (asset, target, family), next to the oracle on synthetic data."""
    from signalcast.evaluation.folds import WalkForwardConfig
    from signalcast.evaluation.report import write_json, write_report
    from signalcast.evaluation.suite import evaluate_settings, selected_families, synthetic_candles

    settings = load_settings(config)
    families = selected_families(family)  # unknown names fail before any work
    symbols = [settings.asset(a).symbol for a in asset] if asset else [
        a.symbol for a in settings.assets]
    targets = [settings.target(t).key for t in target] if target else None
    markets = None
    if synthetic_periods:
        candles, markets = synthetic_candles(settings, symbols, synthetic_periods)
        source = f"synthetic market, {synthetic_periods} candles, seed {settings.data.seed}"
    else:
        candles = stored_candles(settings, symbols)
        source = f"stored candles ({settings.redacted()['environment']['database_url']})"
    if predictions_path:
        write_selection_predictions(settings, candles, targets, family, predictions_path)
        return
    console.print(f"evaluating on {source}, {folds} folds")
    with console.status("walk-forward") as status:
        evaluations = evaluate_settings(
            settings, candles, targets=targets, families=families,
            config=WalkForwardConfig(
                folds=folds, calibration_fraction=settings.training.calibration_fraction),
            markets=markets,
            progress=lambda msg: status.update(f"walk-forward: {msg}"))
    bench = benchmarks(evaluations)
    print_comparison(evaluations, bench=bench)
    for ev in evaluations:
        for why in ev.plan.skipped:
            console.print(f"[yellow]{ev.asset} {ev.target.key}[/yellow] {why}")
    if json_path:
        write_json(evaluations, json_path,
                   {"source": source, "folds": folds, "benchmarks": bench})
        console.print(f"JSON written to {json_path}")
    if report_path:
        write_report(evaluations, report_path, title=f"signalcast evaluation: {source}")
        console.print(f"report written to {report_path}")


def write_selection_predictions(settings: Settings, candles: dict[str, Any],
                                targets: Sequence[str] | None, families: Sequence[str] | None,
                                path: Path) -> None:
    """Training's walk-forward selection (``training.folds``, purge = horizon) over every
    (asset, target), its out-of-fold three-outcome forecasts written to ``path``."""
    from signalcast.config.models import AUTO
    from signalcast.evaluation.folds import WalkForwardConfig
    from signalcast.evaluation.predictions_csv import selection_rows, write_predictions_csv
    from signalcast.evaluation.selection import build_outcome_set, evaluate_candidates
    from signalcast.lifecycle.evidence import candidate_families, family_params

    names = list(families) if families else candidate_families(settings)
    cfg = WalkForwardConfig(folds=settings.training.folds,
                            calibration_fraction=settings.training.calibration_fraction)
    rows: list[dict] = []
    for symbol, frame in candles.items():
        asset_cfg = settings.asset(symbol)
        for target in ([settings.target(k) for k in targets] if targets else settings.targets):
            with console.status(f"{symbol} {target.key}: selecting among {', '.join(names)}"):
                data = build_outcome_set(frame, asset_cfg.timeframe, target.pct, target.horizon)
                selection = evaluate_candidates(
                    data, target.horizon,
                    {n: family_params(settings, n, target.horizon) for n in names}, cfg,
                    n_boot=settings.training.bootstrap)
            rows += selection_rows(data, selection, symbol, target.key)
            gate = "open" if selection.gate_open else "held"
            console.print(f"{symbol} {target.key}: champion {selection.champion} "
                          f"({AUTO} among {len(names)}), alerts {gate}: {selection.gate_reason}")
    n = write_predictions_csv(path, rows)
    console.print(f"{n} predictions written to {path}")


def stored_candles(settings: Settings, assets: Sequence[str]) -> dict[str, Any]:
    """Every stored candle of each asset from the configured database."""
    from signalcast.core.errors import DataError
    from signalcast.db.candles import read_candles
    from signalcast.db.engine import init_db, session_scope

    engine = init_db(settings.env.database_url)
    out = {}
    with session_scope(engine, readonly=True) as session:
        for symbol in assets:
            cfg = settings.asset(symbol)
            out[symbol] = read_candles(session, cfg.symbol, cfg.timeframe)
            if out[symbol].empty:
                raise DataError(f"{cfg.symbol}: no {cfg.timeframe} candles stored; run "
                                "`signalcast ingest` or evaluate with --synthetic N")
    return out
