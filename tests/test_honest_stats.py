"""Skill statistics, the monotone calibrator and evidence-based selection (fast, no services)."""

import json

import numpy as np
import pytest

from signalcast.features.labels import DOWN, EXPIRED, UP
from signalcast.models.calibration import (
    MonotoneCalibrator,
    SigmoidCalibrator,
    calibrator_from_dict,
)
from signalcast.models.three_outcome import ThreeOutcomeCalibration, combine
from signalcast.stats.skill import (
    auc_null,
    brier_skill,
    causal_base_rate,
    dm_test,
    multi_brier,
    onehot3,
    skill_test,
)


def _overlapping(n, h, seed=0):
    rng = np.random.default_rng(seed)
    z = np.convolve(rng.standard_normal(n + h), np.ones(h) / h, "valid")[:n]
    return (z > 0).astype(float), rng


def test_causal_base_rate_uses_only_resolved_labels():
    y = np.array([1, 1, 1, 0, 0, 0], float)
    pos = np.arange(6)
    ref = causal_base_rate(y, pos, pos, horizon=2, prior=0.5, strength=2)
    # at t=2 only row 0 is resolved (0 + 2 <= 2): (1 + 1) / (1 + 2)
    assert ref[0] == ref[1] == 0.5 and ref[2] == pytest.approx(2 / 3)
    y2 = y.copy()
    y2[4:] = 1  # changing later outcomes must not change earlier references
    assert np.allclose(causal_base_rate(y2, pos, pos, 2)[:5], ref[:5])


def test_random_forecast_has_no_skill_and_a_large_p():
    y, rng = _overlapping(3000, 48)
    ref = np.full(len(y), y.mean())
    p = np.clip(ref + rng.normal(0, 0.03, len(y)), 0, 1)
    for test in (skill_test(y, p, ref, block=48, n_boot=400), dm_test(y, p, ref, lags=48)):
        assert abs(test.skill) < 0.02 and test.p_value > 0.2 and test.lower < 0


def test_informative_forecast_has_positive_bound():
    rng = np.random.default_rng(3)
    q = rng.random(4000)
    y = (rng.random(4000) < q).astype(float)
    test = skill_test(y, q, np.full(4000, 0.5), block=24, n_boot=400)
    assert test.skill > 0.2 and test.lower > 0.1 and test.p_value < 0.01


def test_auc_shift_null_widens_with_overlap():
    y, rng = _overlapping(2000, 72)
    p = np.convolve(rng.standard_normal(2071), np.ones(72) / 72, "valid")[:2000]
    res = auc_null(y, p, horizon=72, n_shifts=300)
    iid_sd = np.sqrt((2000 + 1) / (12 * y.sum() * (2000 - y.sum())))
    assert res.null_sd > 2 * iid_sd and res.p_value > 0.01
    assert abs(res.null_mean - 0.5) < 0.05


def test_multi_brier_and_onehot():
    labels = np.array([UP, DOWN, EXPIRED])
    oh = onehot3(labels)
    assert oh.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert multi_brier(oh, oh) == 0.0
    assert brier_skill(oh, oh, np.full((3, 3), 1 / 3)) == 1.0


def _miscalibrated(n=4000, seed=0, stretch=2.5):
    rng = np.random.default_rng(seed)
    q = rng.random(n)
    y = (rng.random(n) < q).astype(float)
    raw = np.clip(0.5 + (q - 0.5) * stretch, 0.01, 0.99)
    return raw, y, np.repeat(np.arange(4), n // 4)


def test_calibrator_monotone_and_never_flips_an_inverted_model():
    raw, y, groups = _miscalibrated()
    for r in (raw, 1 - raw):  # the second is a model that ranks backwards
        cal = MonotoneCalibrator.fit(r, y, horizon=10, groups=groups, positions=np.arange(len(y)))
        grid = np.linspace(0.001, 0.999, 500)
        assert np.all(np.diff(cal(grid)) >= 0)
        assert cal.a > 0
    assert cal.kind == "sigmoid"  # the inverted model is flattened toward the base rate,
    assert np.ptp(cal(grid)) < 0.05  # never turned around


def test_calibrator_helps_overconfident_and_is_identity_when_calibrated():
    raw, y, groups = _miscalibrated()
    cal = MonotoneCalibrator.fit(raw, y, horizon=10, groups=groups, positions=np.arange(len(y)))
    assert cal.kind == "sigmoid" and cal.heldout_brier_cal < cal.heldout_brier_raw
    rng = np.random.default_rng(1)
    q = rng.random(4000)
    y2 = (rng.random(4000) < q).astype(float)
    ident = MonotoneCalibrator.fit(q, y2, horizon=10, groups=groups, positions=np.arange(4000))
    assert ident.kind == "identity"
    assert np.array_equal(ident(q), q)  # the raw forecast itself, tails included


def test_calibrator_does_not_extrapolate_beyond_its_fitted_range():
    """Beyond the raw range it was fitted on, a fitted map is flat in value (the fitted
    extreme's probability) and still strictly increasing (the order of rows, so the AUC, is
    kept)."""
    rng = np.random.default_rng(3)
    raw = rng.uniform(0.4, 0.6, 4000)  # the model never said anything outside [0.4, 0.6]
    y = (rng.random(4000) < 0.5 + 0.3 * (raw - 0.5)).astype(float)  # overconfident: a map
    groups = np.repeat(np.arange(4), 1000)
    for cal in (MonotoneCalibrator.fit(raw, y, horizon=10, groups=groups),  # validated
                MonotoneCalibrator.fit(raw, y, horizon=10)):  # the shrunk sigmoid itself
        assert cal.kind == "sigmoid"
        assert 0.4 <= cal.lo < 0.41 and 0.59 < cal.hi <= 0.6
        far = cal(np.array([0.01, 0.2, 0.8, 0.99]))
        assert abs(far[0] - cal(np.array([cal.lo]))[0]) < 1e-3
        assert abs(far[3] - cal(np.array([cal.hi]))[0]) < 1e-3
        assert np.all(np.diff(far) > 0)


def test_calibrator_shrinks_to_base_rate_on_tiny_data():
    raw, y, _ = _miscalibrated(n=60)
    cal = MonotoneCalibrator.fit(raw, y, horizon=72)  # n_eff < 1: almost all prior
    assert cal.w < 0.1
    assert np.ptp(cal(np.linspace(0.01, 0.99, 50))) < 0.1


def test_a_flat_temperature_shrinks_toward_fifty_percent_not_its_folds_base_rate():
    """A forecast of no skill gets a flat map. Shrunk toward each fitting window's base rate,
    every walk-forward fold became its own constant and the pooled rows were ranked by those
    constants; shrunk toward the temperature's own null (50%), a row the model put above 50%
    stays above it whichever fold it is in. A map with an intercept (the touch factor) still
    shrinks toward its base rate; an artifact from before ``prior`` still serves as fitted."""
    rng = np.random.default_rng(7)
    raw = rng.uniform(0.05, 0.95, 3000)  # says a lot, knows nothing
    grid = np.linspace(0.02, 0.98, 49)
    for rate in (0.4, 0.6):
        y = (rng.random(3000) < rate).astype(float)
        cal = MonotoneCalibrator.fit(raw, y, horizon=10)
        assert cal.prior == 0.5 and abs(cal.base - rate) < 0.05
        assert np.all((cal(grid) - 0.5) * (grid - 0.5) >= 0)  # the same side of 50% as raw
        assert np.all(np.diff(cal(grid)) > 0)
        touch = MonotoneCalibrator.fit(raw, y, horizon=10, intercept=True)
        assert touch.prior is None and abs(touch(np.array([0.5]))[0] - rate) < 0.05
        old = {k: v for k, v in cal.to_dict().items() if k != "prior"}
        inside = grid[(grid >= cal.lo) & (grid <= cal.hi)]
        expected = cal.w * SigmoidCalibrator(cal.a, cal.b)(inside) + (1 - cal.w) * cal.base
        assert np.allclose(calibrator_from_dict(old)(inside), expected)


def test_calibrators_round_trip_through_json():
    raw, y, groups = _miscalibrated()
    cal = MonotoneCalibrator.fit(raw, y, horizon=10, groups=groups)
    back = calibrator_from_dict(json.loads(json.dumps(cal.to_dict())))
    assert np.allclose(back(raw), cal(raw))
    three = ThreeOutcomeCalibration(cal, cal)
    again = ThreeOutcomeCalibration.from_dict(json.loads(json.dumps(three.to_dict())))
    assert np.allclose(again(raw, raw), three(raw, raw))
    assert calibrator_from_dict({"a": 1.0, "b": 0.0})(np.array([0.3]))[0] == pytest.approx(0.3)


def test_combine_is_a_distribution():
    probs = combine([0.2, 1.0, 0.7], [0.9, 0.5, 0.0])
    assert np.allclose(probs.sum(axis=1), 1) and (probs >= 0).all()
    assert probs[0].tolist() == pytest.approx([0.18, 0.02, 0.8])
