"""The alert states the served, calibrated, unconditional chance of its direction: the number
stored as the prediction is the number in the message, never the conditional P(up | touched)
nor the raw model output."""

from datetime import UTC, datetime

import numpy as np
import pytest

from signalcast.alerts.rules import signal_payload
from signalcast.config import TargetConfig
from signalcast.models.artifact import ServedModel
from signalcast.models.base import SignalModel
from signalcast.models.calibration import MonotoneCalibrator
from signalcast.notifier.format import format_signal_text


class _Fixed(SignalModel):
    """Returns column 0 of X as its probability (a stand-in model with known raw output)."""

    family = "test_fixed"

    def fit(self, X, y):
        return self

    def predict_proba(self, X):
        return np.asarray(X, float)[:, 0]

    def to_bytes(self):
        return b""

    @classmethod
    def from_bytes(cls, data, params):
        return cls(**params)


class _Version:
    id, family, version = 7, "test_fixed", 1


def test_the_alert_states_the_served_calibrated_unconditional_probability():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.3, 0.99, 5000)  # an over-confident direction model
    y = (rng.random(5000) < 0.5 + (raw - 0.5) * 0.5).astype(float)
    direction = MonotoneCalibrator.fit(raw, y, horizon=10, groups=np.repeat(np.arange(5), 1000))
    assert direction.kind == "sigmoid"  # calibration changes the number
    served = ServedModel(_Fixed(), direction, "v1", ["f"], touch_model=_Fixed(),
                         touch_calibrator=MonotoneCalibrator())  # identity touch factor
    X = np.array([[0.95]])  # raw P(up | touched) = P(touch) = 0.95
    p_up, p_down, p_none = served.predict3(X)[0]
    conditional = float(direction(np.array([0.95]))[0])
    assert p_up == pytest.approx(0.95 * conditional) and p_none == pytest.approx(0.05)
    target = TargetConfig(pct=0.02, horizon=72, alert_threshold=0.6)
    payload = signal_payload("BTC/USDT", "1h", target, _Version(), datetime(2024, 1, 1,
                             tzinfo=UTC), 100.0, float(p_up), float(p_down))
    assert payload is not None and payload["direction"] == "UP"
    assert payload["probability"] == pytest.approx(p_up, abs=5e-5)  # not 0.95, not conditional
    assert f"{round(p_up * 100)}% chance of touching" in format_signal_text(
        {**payload, "band": "medium"})
