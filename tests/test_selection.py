"""Evidence-based selection picks a planted better family and the gate holds a no-skill one."""

import numpy as np
import pandas as pd
import pytest

from signalcast.evaluation.folds import WalkForwardConfig
from signalcast.evaluation.selection import (
    CandidateReport,
    OutcomeSet,
    evaluate_candidates,
    select_champion,
    skill_gate,
)
from signalcast.features.labels import DOWN, EXPIRED, UP
from signalcast.models import registry
from signalcast.models.base import SignalModel
from signalcast.stats.skill import AucNull, SkillTest


class _Column(SignalModel):
    """Predicts from column ``col`` through a logistic map (the planted signal is column 0)."""

    family = "test_column"

    def __init__(self, *, seed: int = 0, col: int = 0, scale: float = 1.0):
        super().__init__(seed=seed, col=col, scale=scale)

    def fit(self, X, y):
        self.fitted_ = True
        return self

    def predict_proba(self, X):
        return 1 / (1 + np.exp(-self.params["scale"] * X[:, self.params["col"]]))

    def to_bytes(self):
        return b""

    @classmethod
    def from_bytes(cls, data, params):
        return cls(**params)


@pytest.fixture
def planted(monkeypatch):
    monkeypatch.setattr(registry, "family_class", lambda name: _Column)
    rng = np.random.default_rng(0)
    n, h = 6000, 10
    # a slowly varying signal (overlapping labels) in column 0, noise in column 1
    signal = np.repeat(rng.standard_normal(n // h + 1), h)[:n] * 1.5
    X = np.column_stack([signal, rng.standard_normal(n)])
    up = rng.random(n) < 1 / (1 + np.exp(-signal))
    labels = np.where(rng.random(n) < 0.15, EXPIRED, np.where(up, UP, DOWN)).astype(np.int8)
    times = pd.date_range("2024", periods=n, freq="h").to_numpy()
    return OutcomeSet(X, labels, np.arange(n), times), h


def test_selection_picks_planted_family_and_gate(planted):
    data, h = planted
    sel = evaluate_candidates(data, h, {"good": {"col": 0}, "noise": {"col": 1}},
                              WalkForwardConfig(folds=4, min_fit_rows=100), n_boot=200)
    by = {c.family: c for c in sel.candidates}
    # registry is patched: both names build _Column; the params differ
    assert sel.champion == "good"
    assert by["good"].skill.lower > 0 and sel.gate_open
    ok, reason = skill_gate(by["noise"])
    assert not ok and "not shown" in reason
    assert by["noise"].auc_null.p_value > 0.01
    assert by["good"].auc_cal == pytest.approx(by["good"].auc_raw, abs=0.005)


def _report(family: str, skill: float, lower: float, three_lower: float) -> CandidateReport:
    def test(s: float, lo: float) -> SkillTest:
        return SkillTest(skill=s, lower=lo, p_value=0.01 if lo > 0 else 0.3, n=5000, block=72,
                         method="block bootstrap")

    return CandidateReport(
        family=family, n_direction=5000, n_all=5000, auc_raw=0.6, auc_cal=0.6,
        brier_raw=0.23, brier_cal=0.23, brier_ref=0.25, skill=test(skill, lower),
        skill_raw=skill, auc_null=AucNull(0.6, 0.5, 0.03, 0.01, 200),
        three={"test": test(skill, three_lower)}, calibration_kinds=["identity"], seconds=1.0)


def test_the_champion_is_the_candidate_whose_skill_is_surest_not_the_luckiest():
    lucky = _report("random_forest", skill=0.072, lower=0.005, three_lower=-0.09)  # gate held
    steady = _report("hmm", skill=0.066, lower=0.045, three_lower=0.04)
    wide = _report("lightgbm", skill=0.080, lower=0.001, three_lower=0.002)
    assert not skill_gate(lucky)[0] and skill_gate(steady)[0] and skill_gate(wide)[0]
    assert select_champion([lucky, steady, wide]) == "hmm"  # open gate, then surest skill
    assert select_champion([lucky, wide]) == "lightgbm"  # the only open gate wins
    held = _report("xgboost", skill=0.01, lower=-0.02, three_lower=-0.03)
    assert select_champion([held, lucky]) == "random_forest"  # none open: the higher bound
