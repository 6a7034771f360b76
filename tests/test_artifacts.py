"""LightGBM through the artifact envelope: sha256, MAC and feature checks before anything
loads."""

from __future__ import annotations

import numpy as np
import pytest

from signalcast.core.errors import ArtifactError
from signalcast.models import registry
from signalcast.models.artifact import (
    ArtifactIdentity,
    ArtifactKeys,
    ServedModel,
    load_artifact,
    sha256,
    sign,
)
from signalcast.models.calibration import SigmoidCalibrator

FEATURES = [f"f{i}" for i in range(5)]
KEYS = ArtifactKeys(b"k" * 32)
ROW = ArtifactIdentity("lightgbm", "BTC/USDT", "1pct_24", 1)


def load(blob: bytes, digest: str | None = None, **checks):
    return load_artifact(blob, digest or sha256(blob), mac=sign(blob, ROW, KEYS), identity=ROW,
                         keys=KEYS, **checks)


@pytest.fixture
def served() -> ServedModel:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = (X[:, 0] + rng.normal(scale=0.5, size=400) > 0).astype(int)
    model = registry.create("lightgbm", n_estimators=20).fit(X, y)
    return ServedModel(model, SigmoidCalibrator(1.2, -0.1), "v1", FEATURES)


def test_artifact_round_trip_gives_identical_probabilities(served):
    blob = served.to_bytes()
    loaded = load(blob, feature_set="v1", features=FEATURES)
    X = np.random.default_rng(1).normal(size=(50, 5))
    np.testing.assert_array_equal(loaded.predict(X), served.predict(X))
    assert loaded.calibrator == served.calibrator


def test_a_corrupted_artifact_is_refused_before_loading(served):
    blob = bytearray(served.to_bytes())
    digest = sha256(bytes(blob))
    blob[-10] ^= 0xFF
    with pytest.raises(ArtifactError, match="checksum mismatch.*retrain"):
        load(bytes(blob), digest)


def test_a_model_trained_on_other_features_refuses_to_serve(served):
    blob = served.to_bytes()
    with pytest.raises(ArtifactError, match="trained on other features.*refuses to serve"):
        load(blob, features=[*FEATURES[:4], "other"])
    with pytest.raises(ArtifactError, match="feature set 'v1'"):
        load(blob, feature_set="v2")


def test_predict_before_fit_raises_a_clear_error():
    with pytest.raises(Exception, match="not fitted"):
        registry.create("lightgbm").predict_proba(np.zeros((1, 3)))


def test_unknown_family_suggests_the_closest_name():
    with pytest.raises(KeyError, match="Unknown model family 'lgbm'. Did you mean 'lightgbm'"):
        registry.create("lgbm")


def test_bad_hyperparameters_name_the_family():
    with pytest.raises(ValueError, match="bad parameters for model family 'lightgbm'"):
        registry.create("lightgbm", n_trees=5)


def test_calibration_fixes_a_systematically_overconfident_model():
    rng = np.random.default_rng(3)
    true_p = rng.uniform(0.2, 0.8, size=5000)
    y = (rng.uniform(size=5000) < true_p).astype(int)
    overconfident = 1 / (1 + np.exp(-3 * np.log(true_p / (1 - true_p))))
    calibrated = SigmoidCalibrator.fit(overconfident, y)(overconfident)
    brier = lambda p: float(np.mean((p - y) ** 2))  # noqa: E731
    assert brier(calibrated) < brier(overconfident) - 0.01
    assert abs(calibrated.mean() - y.mean()) < 0.02
