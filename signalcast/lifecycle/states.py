"""The states of a model version that learns online, and how a past prediction is traced to the
exact state that made it.

A version is trained once; an online model (River, or an ensemble with a River member) then
keeps learning resolved outcomes (:mod:`signalcast.pipeline.learn`). Each batch it learns makes
a **new state**, appended to ``model_states`` and never overwritten:

* state 0 is the artifact as trained (appended before the first update, with its own MAC);
* state ``k`` is the model after the ``k``-th batch, with ``learned`` (outcomes learned in
  total) and ``last_candle`` (the newest learned candle);
* every state is signed exactly like a trained artifact (:func:`signalcast.models.artifact.sign`:
  HMAC-SHA256 under ``SIGNALCAST_ARTIFACT_KEY`` over the bytes and the version's identity), so
  loading one verifies it like any artifact and a state cannot be moved to another version.

The version row's ``artifact``/``sha256``/``artifact_mac`` hold the *current* state, the one
the router serves (its model cache is keyed by (version id, sha256), so a worker loads a new
state at its next prediction); it is a copy of the newest state, and the states before it stay.

Every prediction records ``model_sha256``, the sha256 of the artifact that made it. To
reproduce one (:func:`reproduce`): its version's states (or, for a version that never learned,
its trained artifact) hold exactly one artifact with that sha256; load it (MAC verified), rebuild
the candle's features from the stored candles as the hot path did (the same window of
``MAX_LOOKBACK + 1`` candles) and predict: the probabilities are those recorded.

Retention: a purged version (``models.keep_versions``) loses the bytes of its trained artifact
and of its states, except every state that served a prediction (champion, A/B or fallback),
which keeps its bytes; versions in the champion history (``routing.keep_champions``) lose nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, select

from signalcast.core.errors import ArtifactError
from signalcast.db.tables import ModelState, ModelVersion, Prediction
from signalcast.models.artifact import (
    ArtifactIdentity,
    ArtifactKeys,
    ServedModel,
    load_artifact,
    sign,
)
from signalcast.models.artifact import sha256 as digest


def states(session: Session, version_id: int) -> list[ModelState]:
    """Every state of a version, oldest first (none: it never learned online)."""
    return list(session.exec(select(ModelState).where(ModelState.model_version_id == version_id)
                             .order_by(ModelState.state)).all())


def append_state(session: Session, version: ModelVersion, blob: bytes, keys: ArtifactKeys, *,
                 learned: int, last_candle: datetime | None,
                 now: datetime | None = None) -> ModelState:
    """Append ``blob`` as the version's next state (state 0, its trained artifact, first when
    it has none) and make it the state the version serves. The caller holds the version row
    locked (``FOR UPDATE``), so state numbers cannot collide."""
    if version.artifact is None:
        raise ArtifactError(f"{version.family} v{version.version}: its artifact was purged; "
                            "it cannot learn")
    newest = session.exec(select(func.max(ModelState.state)).where(
        ModelState.model_version_id == version.id)).one()
    stamp = {} if now is None else {"created_at": now}
    if newest is None:  # first update: keep the trained artifact as state 0
        session.add(ModelState(model_version_id=version.id, state=0, learned=0,
                               last_candle=None, sha256=version.sha256,
                               artifact_mac=version.artifact_mac, artifact=version.artifact,
                               created_at=version.created_at))
        newest = 0
    identity = ArtifactIdentity.of(version)
    state = ModelState(model_version_id=version.id, state=int(newest) + 1, learned=learned,
                       last_candle=last_candle, sha256=digest(blob),
                       artifact_mac=sign(blob, identity, keys), artifact=blob, **stamp)
    session.add(state)
    version.artifact, version.sha256, version.artifact_mac = blob, state.sha256, \
        state.artifact_mac
    version.metrics = {**version.metrics, "online_state": state.state}
    session.add(version)
    return state


@dataclass(frozen=True)
class StoredArtifact:
    """The bytes of one artifact of a version (trained or a state) and what verifies them."""

    artifact: bytes
    sha256: str
    artifact_mac: str | None
    state: int | None  # None: the version's trained artifact (it never learned online)


def artifact_by_sha256(session: Session, version_id: int, checksum: str) -> StoredArtifact | None:
    """The artifact of version ``version_id`` whose sha256 is ``checksum``: one of its states,
    else its trained artifact (a version that never learned); None when purged or unknown."""
    row = session.exec(select(ModelState.artifact, ModelState.sha256, ModelState.artifact_mac,
                              ModelState.state)
                       .where(ModelState.model_version_id == version_id,
                              ModelState.sha256 == checksum)
                       .order_by(ModelState.state.desc())).first()
    if row is not None:
        return None if row[0] is None else StoredArtifact(*row)
    row = session.exec(select(ModelVersion.artifact, ModelVersion.sha256,
                              ModelVersion.artifact_mac)
                       .where(ModelVersion.id == version_id,
                              ModelVersion.sha256 == checksum)).first()
    return None if row is None or row[0] is None else StoredArtifact(*row, state=None)


def load_state(session: Session, version: ModelVersion, checksum: str, keys: ArtifactKeys,
               **checks) -> ServedModel:
    """Load (MAC verified) the artifact of ``version`` whose sha256 is ``checksum``."""
    stored = artifact_by_sha256(session, version.id, checksum)
    if stored is None:
        raise ArtifactError(f"{version.family} v{version.version}: no stored artifact with "
                            f"sha256 {checksum[:12]}... (purged, or not this version's)")
    return load_artifact(stored.artifact, stored.sha256, mac=stored.artifact_mac,
                         identity=ArtifactIdentity.of(version), keys=keys, **checks)


def reproduce(session: Session, settings, prediction: Prediction) -> tuple[float, float]:
    """(prob_up, prob_down) of a past prediction, recomputed from the exact state that made
    it (its ``model_sha256``) on the candle's features rebuilt from the stored candles."""
    from signalcast.db.candles import read_candles
    from signalcast.features import FEATURE_SET, MAX_LOOKBACK, feature_names, latest_features
    from signalcast.routing.router import model_output

    if prediction.model_sha256 is None:
        raise ArtifactError("this prediction was recorded before predictions named their "
                            "model state (migration 0011); it cannot be traced exactly")
    version = session.get(ModelVersion, prediction.model_version_id)
    served = load_state(session, version, prediction.model_sha256, settings.artifact_keys,
                        feature_set=FEATURE_SET, features=feature_names())
    asset = settings.asset(prediction.asset)
    candles = read_candles(session, asset.symbol, asset.timeframe, end=prediction.candle_time,
                           limit=MAX_LOOKBACK + 1)
    x = latest_features(candles, asset.timeframe).reshape(1, -1)
    output = model_output(served, x)
    return output.p_up, output.down


def purge_states(session: Session, version_id: int) -> int:
    """Drop the bytes of a purged version's states, except those that served a prediction (as
    champion, A/B or fallback: kept, so every served signal stays reproducible); returns the
    number of states dropped."""
    served = set(session.exec(select(Prediction.model_sha256).where(
        Prediction.model_version_id == version_id, Prediction.served.is_(True),
        Prediction.model_sha256.is_not(None))
        .distinct()).all())
    dropped = 0
    for state in states(session, version_id):
        if state.artifact is not None and state.sha256 not in served:
            state.artifact = None
            session.add(state)
            dropped += 1
    return dropped
