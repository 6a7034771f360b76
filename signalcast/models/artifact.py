"""Model artifacts: pickle-free bytes with a JSON header, verified by sha256 before loading.

Layout: ``b"SCM1"`` + 4-byte big-endian header length + JSON header + the family's own payload.
The header carries the family, hyperparameters, feature list and calibration, so an artifact is
self-describing; the sha256 of the whole blob is stored beside it in the database.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from signalcast.core.errors import ArtifactError
from signalcast.models.base import SignalModel
from signalcast.models.calibration import SigmoidCalibrator
from signalcast.models.registry import family_class

MAGIC = b"SCM1"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ServedModel:
    """A fitted model plus its calibration: what a worker keeps in memory to serve."""

    model: SignalModel
    calibrator: SigmoidCalibrator
    feature_set: str
    features: list[str]

    @property
    def family(self) -> str:
        return self.model.family

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Calibrated P(UP) for each row of ``X``."""
        return self.calibrator(self.model.predict_proba(X))

    def to_bytes(self) -> bytes:
        header = json.dumps({
            "family": self.model.family,
            "params": self.model.get_params(),
            "feature_set": self.feature_set,
            "features": self.features,
            "calibration": self.calibrator.to_dict(),
        }).encode()
        return MAGIC + struct.pack(">I", len(header)) + header + self.model.to_bytes()


def load_artifact(data: bytes, expected_sha256: str, *, feature_set: str | None = None,
                  features: list[str] | None = None, label: str = "model") -> ServedModel:
    """Verify and load an artifact. Refuses a checksum mismatch and, when given, a feature set
    or feature list different from the one the caller will compute."""
    actual = sha256(data)
    if actual != expected_sha256:
        raise ArtifactError(
            f"{label}: artifact checksum mismatch (stored sha256 {expected_sha256[:12]}..., "
            f"actual {actual[:12]}...): the artifact is corrupted; retrain this model"
        )
    if data[:4] != MAGIC:
        raise ArtifactError(f"{label}: not a signalcast artifact (bad header); retrain it")
    (size,) = struct.unpack(">I", data[4:8])
    header: dict[str, Any] = json.loads(data[8 : 8 + size])
    if feature_set is not None and header["feature_set"] != feature_set:
        raise ArtifactError(
            f"{label} was trained on feature set {header['feature_set']!r} but this worker "
            f"computes {feature_set!r}; retrain it with the current features"
        )
    if features is not None and header["features"] != features:
        missing = sorted(set(features) ^ set(header["features"]))[:5]
        raise ArtifactError(
            f"{label} was trained on other features (differing: {', '.join(missing) or 'order'})"
            "; it refuses to serve: retrain it with the current features"
        )
    model = family_class(header["family"]).from_bytes(data[8 + size :], header["params"])
    return ServedModel(model, SigmoidCalibrator(**header["calibration"]),
                       header["feature_set"], header["features"])
