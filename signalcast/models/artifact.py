"""Model artifacts: bytes with a JSON header, authenticated by a keyed MAC before loading.

Layout: ``b"SCM1"`` + 4-byte big-endian header length + JSON header + the family's own payload.
The header carries the family, hyperparameters, feature list and calibration, so an artifact is
self-describing; the sha256 of the whole blob is stored beside it in the database (a corruption
check, not a security one: anyone who can write the row can recompute it).

Authentication. Some families' payloads are pickles (scikit-learn, River), so loading bytes from
the database would run whatever a database writer put there. Every artifact is therefore signed:
``artifact_mac`` (in the same row) is HMAC-SHA256 under a key that is *not* in the database, over
the artifact bytes and the row's identity (family, asset, target, version), so a database writer
without the key can neither forge an artifact nor move one to another row. :func:`load_artifact`
checks the MAC before a single byte is deserialised, refuses a header whose family differs from
the row's, and loads with the *row's* family class, never the header's.

Keys (:class:`ArtifactKeys`, resolved from the environment by ``signalcast.config.keys``):

- ``SIGNALCAST_ARTIFACT_KEY`` (or ``SIGNALCAST_ARTIFACT_KEY_FILE``, a path to a file holding it)
  signs new artifacts; ``SIGNALCAST_ARTIFACT_KEYS_OLD`` (comma-separated) are accepted for
  verification only, for rotation.
- Default when no key is set, for a file-backed SQLite database (one host: embedded and demo
  mode, tests): a random key generated once into ``<database file>.artifact-key`` (mode 0600)
  and reused by every process on that host. It protects against anything that can write rows but
  not read that file (SQL access, a database copied from elsewhere); it cannot protect against
  someone who can read the directory of the database, so set a real key wherever that matters.
  An in-memory SQLite database gets a random key for the life of the process.
- Any other database (Postgres: several hosts) with no key refuses to sign or load with a
  ConfigError naming ``SIGNALCAST_ARTIFACT_KEY``: keys generated per host would not agree.

Artifacts stored before signing existed have no MAC and are refused: retrain them
(``signalcast train --all``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from signalcast.core.errors import ArtifactError
from signalcast.models.base import SignalModel
from signalcast.models.calibration import calibrator_from_dict
from signalcast.models.registry import family_class

MAGIC = b"SCM1"
MAC_DOMAIN = b"signalcast-artifact-mac-v1\n"
KEY_VARIABLE = "SIGNALCAST_ARTIFACT_KEY"
OLD_KEYS_VARIABLE = "SIGNALCAST_ARTIFACT_KEYS_OLD"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ArtifactKeys:
    """The key that signs new artifacts plus older keys still accepted when verifying."""

    current: bytes = field(repr=False)
    old: tuple[bytes, ...] = field(default=(), repr=False)
    source: str = KEY_VARIABLE  # where ``current`` came from, for messages

    def __post_init__(self) -> None:
        if len(self.current) < 16 or any(len(k) < 16 for k in self.old):
            raise ValueError("artifact keys must be at least 16 bytes")


class _Identified(Protocol):
    family: str
    asset: str
    target: str
    version: int


@dataclass(frozen=True)
class ArtifactIdentity:
    """The row an artifact belongs to; part of what the MAC covers."""

    family: str
    asset: str
    target: str
    version: int

    @classmethod
    def of(cls, row: _Identified) -> ArtifactIdentity:
        return cls(row.family, row.asset, row.target, int(row.version))

    def __str__(self) -> str:
        return f"{self.family} v{self.version} {self.asset} {self.target}"


def _mac(key: bytes, data: bytes, identity: ArtifactIdentity) -> str:
    who = json.dumps([identity.family, identity.asset, identity.target, identity.version])
    mac = hmac.new(key, MAC_DOMAIN, hashlib.sha256)
    mac.update(struct.pack(">I", len(who)) + who.encode())
    mac.update(data)
    return mac.hexdigest()


def sign(data: bytes, identity: ArtifactIdentity, keys: ArtifactKeys) -> str:
    """The MAC to store in ``model_versions.artifact_mac`` (always under the current key)."""
    return _mac(keys.current, data, identity)


def verify(data: bytes, mac: str | None, identity: ArtifactIdentity, keys: ArtifactKeys) -> None:
    """Raise :class:`ArtifactError` unless ``mac`` authenticates ``data`` for ``identity``."""
    if not mac:
        raise ArtifactError(
            f"artifact of {identity} is not signed (stored before artifacts were "
            "authenticated, or its signature was removed); it refuses to load: retrain it "
            "(signalcast train --all)")
    if not any(hmac.compare_digest(_mac(key, data, identity), mac)
               for key in (keys.current, *keys.old)):
        raise ArtifactError(
            f"artifact of {identity} failed authentication: it was not signed with the "
            f"configured {KEY_VARIABLE} (or any of {OLD_KEYS_VARIABLE}); if the key was rotated "
            "add the old key, else the row was tampered with: retrain")


@dataclass
class ServedModel:
    """A fitted model plus its calibration: what a worker keeps in memory to serve.

    ``model`` forecasts the direction, P(up first | a level is touched), calibrated by
    ``calibrator``. The touch factor, P(a level is touched within the horizon), is either a
    second model of the same family (``touch_model``) or a constant raw rate (``touch_rate``),
    calibrated by ``touch_calibrator``. :meth:`predict3` gives the unconditional forecast
    ``[p_up, p_down, p_none]``. An artifact from before three outcomes has neither: it serves
    ``p_none = 0`` (its old conditional meaning) and carries no walk-forward evidence, so its
    alerts are held until it is retrained."""

    model: SignalModel
    calibrator: Any
    feature_set: str
    features: list[str]
    touch_model: SignalModel | None = None
    touch_rate: float | None = None
    touch_calibrator: Any = None

    @property
    def family(self) -> str:
        return self.model.family

    @property
    def three_outcome(self) -> bool:
        return self.touch_model is not None or self.touch_rate is not None

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Calibrated P(up first | touched) for each row of ``X``."""
        return self.calibrator(self.model.predict_proba(X))

    def p_touch(self, X: np.ndarray) -> np.ndarray:
        """Calibrated P(a level is touched within the horizon) for each row of ``X``."""
        if self.touch_model is not None:
            raw = self.touch_model.predict_proba(X)
        elif self.touch_rate is not None:
            raw = np.full(len(X), self.touch_rate)
        else:
            return np.ones(len(X))
        return self.touch_calibrator(raw) if self.touch_calibrator is not None else raw

    def combine(self, p_direction: np.ndarray, X: np.ndarray) -> np.ndarray:
        """(n, 3) ``[p_up, p_down, p_none]`` from calibrated direction probabilities."""
        pt = np.clip(np.asarray(self.p_touch(X), float), 0.0, 1.0)
        pd_ = np.clip(np.asarray(p_direction, float), 0.0, 1.0)
        return np.column_stack([pt * pd_, pt * (1.0 - pd_), 1.0 - pt])

    def predict3(self, X: np.ndarray) -> np.ndarray:
        """(n, 3) unconditional ``[P(up first), P(down first), P(neither)]``."""
        return self.combine(self.predict(X), X)

    def to_bytes(self) -> bytes:
        direction = self.model.to_bytes()
        touch = None
        touch_bytes = b""
        if self.three_outcome:
            if self.touch_model is not None:
                touch_bytes = self.touch_model.to_bytes()
            touch = {"size": len(touch_bytes) if self.touch_model is not None else None,
                     "rate": self.touch_rate,
                     "params": (self.touch_model.get_params()
                                if self.touch_model is not None else None),
                     "calibration": (None if self.touch_calibrator is None
                                     else self.touch_calibrator.to_dict())}
        header = json.dumps({
            "family": self.model.family,
            "params": self.model.get_params(),
            "feature_set": self.feature_set,
            "features": self.features,
            "calibration": self.calibrator.to_dict(),
            "direction_size": len(direction),
            "touch": touch,
        }).encode()
        return MAGIC + struct.pack(">I", len(header)) + header + direction + touch_bytes


def load_artifact(data: bytes, expected_sha256: str, *, mac: str | None,
                  identity: ArtifactIdentity, keys: ArtifactKeys, feature_set: str | None = None,
                  features: list[str] | None = None, label: str | None = None) -> ServedModel:
    """Verify and load the artifact of the row ``identity``.

    Refuses, in this order and before deserialising anything: a checksum mismatch, a missing or
    wrong MAC, a header family other than the row's, and (when given) a feature set or feature
    list different from the one the caller will compute. Loads with the row's family class."""
    label = label or str(identity)
    actual = sha256(data)
    if actual != expected_sha256:
        raise ArtifactError(
            f"{label}: artifact checksum mismatch (stored sha256 {expected_sha256[:12]}..., "
            f"actual {actual[:12]}...): the artifact is corrupted; retrain this model"
        )
    verify(data, mac, identity, keys)
    if data[:4] != MAGIC:
        raise ArtifactError(f"{label}: not a signalcast artifact (bad header); retrain it")
    (size,) = struct.unpack(">I", data[4:8])
    header: dict[str, Any] = json.loads(data[8 : 8 + size])
    if header.get("family") != identity.family:
        raise ArtifactError(
            f"{label}: the artifact's header says family {header.get('family')!r} but the row "
            f"is {identity.family!r}; it refuses to load: retrain it")
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
    cls = family_class(identity.family)
    payload = data[8 + size :]
    touch = header.get("touch")
    direction_size = header.get("direction_size", len(payload))
    model = cls.from_bytes(payload[:direction_size], header["params"])
    served = ServedModel(model, calibrator_from_dict(header["calibration"]),
                         header["feature_set"], header["features"])
    if touch is not None:
        if touch.get("size") is not None:
            served.touch_model = cls.from_bytes(payload[direction_size:], touch["params"])
        served.touch_rate = touch.get("rate")
        if touch.get("calibration") is not None:
            served.touch_calibrator = calibrator_from_dict(touch["calibration"])
    return served


class _StoredVersion(_Identified, Protocol):
    artifact: bytes | None
    sha256: str
    artifact_mac: str | None


def load_version(row: _StoredVersion, keys: ArtifactKeys, **checks: Any) -> ServedModel:
    """:func:`load_artifact` of a ``model_versions`` row (``checks``: feature_set, features,
    label)."""
    identity = ArtifactIdentity.of(row)
    if row.artifact is None:
        raise ArtifactError(f"{checks.get('label') or identity}: its artifact was purged; "
                            "retrain or roll back")
    return load_artifact(row.artifact, row.sha256, mac=row.artifact_mac, identity=identity,
                         keys=keys, **checks)
