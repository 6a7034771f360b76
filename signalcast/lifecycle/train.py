"""Train one (asset, target, family): features -> labels -> purged split -> fit -> calibrate ->
a new model version with its artifact, metrics and provenance.

Honest by construction: the model is fitted on the older rows, then a purge gap of ``horizon``
candles (their labels would peek into the calibration fold), then the calibration fold on which
the sigmoid calibrator is fitted and the metrics are measured. Running the same training twice on
the same data returns the existing version instead of adding a copy (the data fingerprint).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

import numpy as np
from sklearn.metrics import brier_score_loss, roc_auc_score
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from signalcast.config import Settings, TargetConfig
from signalcast.core.errors import DataError
from signalcast.core.timeframes import last_closed_open_time, utc
from signalcast.db.candles import read_candles
from signalcast.db.engine import session_scope
from signalcast.db.tables import ModelVersion
from signalcast.features import FEATURE_SET, feature_names
from signalcast.features.dataset import build_training_set, purged_split
from signalcast.lifecycle import admin as model_admin
from signalcast.models import registry
from signalcast.models.artifact import ArtifactIdentity, ServedModel, sha256, sign
from signalcast.models.calibration import SigmoidCalibrator

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def _fingerprint(candles, target: TargetConfig, family: str, params: dict) -> str:
    h = hashlib.sha256()
    h.update(f"{FEATURE_SET}|{target.key}|{family}|{sorted(params.items())}".encode())
    h.update(np.ascontiguousarray(candles.index.asi8).tobytes())
    h.update(np.ascontiguousarray(candles[["open", "high", "low", "close"]].to_numpy()).tobytes())
    return h.hexdigest()


def _lib_versions(family: str) -> dict[str, str]:
    out = {}
    for pkg in ("signalcast", "numpy", "scikit-learn", family):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def train_model(engine: Engine, settings: Settings, asset: str, target_key: str, family: str,
                *, now: datetime, progress: Progress | None = None) -> ModelVersion:
    """Train and store a new version (or return the identical existing one).

    Reads in one short transaction, fits with no transaction open (a fit takes seconds and on
    SQLite a write transaction would block every other writer), and writes in another."""
    say = progress or (lambda _msg: None)
    asset_cfg, target = settings.asset(asset), settings.target(target_key)
    params = settings.model_params(family)
    registry.family_class(family)  # fail fast on an unknown family, before any work
    keys = settings.artifact_keys  # and on a missing artifact key

    say("loading candles")
    end = last_closed_open_time(now, asset_cfg.timeframe)
    with session_scope(engine, readonly=True) as session:
        candles = read_candles(session, asset_cfg.symbol, asset_cfg.timeframe, end=end,
                               limit=settings.training.history_candles)
        fingerprint = _fingerprint(candles, target, family, params)
        existing = _find_existing(session, asset_cfg.symbol, target.key, family, fingerprint)
    if existing is not None:
        say(f"already trained as v{existing.version}")
        return existing

    say("computing features and labels")
    data = build_training_set(candles, asset_cfg.timeframe, target)
    train, cal = purged_split(data.positions, settings.training.calibration_fraction,
                              target.horizon)
    if train.sum() < settings.training.min_rows or cal.sum() < 50:
        raise DataError(
            f"{asset_cfg.symbol} {target.key}: only {int(train.sum())} training rows and "
            f"{int(cal.sum())} calibration rows with a resolved label (need "
            f"{settings.training.min_rows} and 50); ingest more history"
        )
    if len(np.unique(data.y[train])) < 2:
        raise DataError(f"{asset_cfg.symbol} {target.key}: training labels are all one class")

    say(f"fitting {family} on {int(train.sum())} rows")
    model = registry.create(family, **params).fit_with_feature_names(
        data.X[train], data.y[train], feature_names())
    raw = model.predict_proba(data.X[cal])
    calibrator = SigmoidCalibrator.fit(raw, data.y[cal])
    served = ServedModel(model, calibrator, FEATURE_SET, feature_names())
    calibrated = served.predict(data.X[cal])
    y_cal = data.y[cal]
    metrics = {
        "n_train": int(train.sum()), "n_calibration": int(cal.sum()),
        "base_rate_up": float(y_cal.mean()),
        "auc": float(roc_auc_score(y_cal, raw)) if len(np.unique(y_cal)) == 2 else None,
        "brier_raw": float(brier_score_loss(y_cal, raw)),
        "brier": float(brier_score_loss(y_cal, calibrated)),
    }
    blob = served.to_bytes()

    say("storing the new version")
    try:
        with session_scope(engine) as session:
            existing = _find_existing(session, asset_cfg.symbol, target.key, family, fingerprint)
            if existing is not None:  # a concurrent run of the same training won the race
                return existing
            latest = session.exec(select(func.max(ModelVersion.version)).where(
                ModelVersion.asset == asset_cfg.symbol, ModelVersion.target == target.key,
                ModelVersion.family == family)).one()
            row = ModelVersion(
                asset=asset_cfg.symbol, target=target.key, family=family,
                version=(latest or 0) + 1, feature_set=FEATURE_SET, features=feature_names(),
                params=model.get_params(), metrics=metrics, lib_versions=_lib_versions(family),
                train_start=utc(data.times[train][0]), train_end=utc(data.times[cal][-1]),
                n_rows=int(train.sum() + cal.sum()), data_fingerprint=fingerprint,
                sha256=sha256(blob), artifact=blob,
            )
            row.artifact_mac = sign(blob, ArtifactIdentity.of(row), keys)
            _assign_role(session, settings, row)
            session.add(row)
            session.flush()
            if row.role == "champion":  # audited and announced in the same transaction
                model_admin.champion_trained(session, settings, row)
            _purge_old_artifacts(session, settings, row)
    except IntegrityError:  # Postgres: the concurrent twin committed between check and insert
        with session_scope(engine, readonly=True) as session:
            existing = _find_existing(session, asset_cfg.symbol, target.key, family, fingerprint)
        if existing is None:
            raise
        return existing
    auc = "n/a" if metrics["auc"] is None else f"{metrics['auc']:.3f}"
    say(f"done: v{row.version} AUC {auc} Brier {metrics['brier']:.3f}")
    log.info("trained %s %s %s v%d (AUC %s)", asset_cfg.symbol, target.key, family,
             row.version, auc)
    return row


def _find_existing(session: Session, asset: str, target: str, family: str,
                   fingerprint: str) -> ModelVersion | None:
    return session.exec(select(ModelVersion).where(
        ModelVersion.asset == asset, ModelVersion.target == target,
        ModelVersion.family == family, ModelVersion.data_fingerprint == fingerprint)).first()


def _assign_role(session: Session, settings: Settings, row: ModelVersion) -> None:
    """The first version of the configured champion family serves; every later version enters
    as a challenger that shadows the champion (the router records it) until the promotion test
    or an operator promotes it, so a retrain never silently replaces what serves."""
    if row.family != settings.models.champion:
        return
    current = session.exec(select(ModelVersion.id).where(
        ModelVersion.asset == row.asset, ModelVersion.target == row.target,
        ModelVersion.role == "champion")).first()
    if current is None:
        row.role = "champion"


def _purge_old_artifacts(session: Session, settings: Settings, row: ModelVersion) -> None:
    """Keep the newest ``keep_versions`` artifacts per (asset, target, family); older versions
    keep their row (predictions refer to them) but lose their bytes. A champion is never purged."""
    versions = session.exec(select(ModelVersion).where(
        ModelVersion.asset == row.asset, ModelVersion.target == row.target,
        ModelVersion.family == row.family, ModelVersion.artifact.is_not(None))
        .order_by(ModelVersion.version.desc())).all()
    for old in versions[settings.models.keep_versions:]:
        if old.role != "champion":
            old.artifact = None
            session.add(old)
