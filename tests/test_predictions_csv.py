"""``signalcast evaluate --predictions FILE.csv``: one row per (asset, target, family, test
candle) with the unconditional three-outcome forecast, and the selection's pick again as
``champion``."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from signalcast.data.synthetic import SyntheticMarket
from signalcast.evaluation.folds import WalkForwardConfig
from signalcast.evaluation.predictions_csv import COLUMNS, selection_rows, write_predictions_csv
from signalcast.evaluation.selection import build_outcome_set, evaluate_candidates
from signalcast.evaluation.suite import quick_params


@pytest.fixture(scope="module")
def selection():
    candles = SyntheticMarket(["BTC/USDT"], seed=3).generate(2500)["BTC/USDT"]
    data = build_outcome_set(candles, "1h", 0.02, 24)
    families = {f: quick_params(f) for f in ("lightgbm", "lorentzian")}
    return data, evaluate_candidates(data, 24, families, WalkForwardConfig(folds=4),
                                     n_boot=200)


@pytest.mark.slow
def test_csv_has_the_columns_and_one_row_per_family_and_test_candle(selection, tmp_path):
    data, sel = selection
    path = tmp_path / "p.csv"
    n = write_predictions_csv(path, selection_rows(data, sel, "BTC/USDT", "2pct_24"))
    with path.open() as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert tuple(reader.fieldnames) == COLUMNS == (
        "time", "asset", "target", "family", "fold", "p_up", "p_down", "outcome")
    per_family = len(sel.scored)
    assert n == len(rows) == 3 * per_family
    assert {r["family"] for r in rows} == {"lightgbm", "lorentzian", "champion"}
    assert {r["outcome"] for r in rows} <= {"up", "down", "none"}
    assert all(r["time"].endswith("Z") and r["asset"] == "BTC/USDT" for r in rows)
    p_up = np.array([float(r["p_up"]) for r in rows])
    p_down = np.array([float(r["p_down"]) for r in rows])
    assert ((p_up >= 0) & (p_down >= 0) & (p_up + p_down <= 1 + 1e-6)).all()
    champion = [r for r in rows if r["family"] == "champion"]
    picked = [{**r, "family": "champion"} for r in rows if r["family"] == sel.champion]
    assert champion == picked
    assert min(int(r["fold"]) for r in rows) >= 1  # fold 0 warms the calibration up
