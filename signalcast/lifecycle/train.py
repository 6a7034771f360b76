"""Train one (asset, target, family): features -> three-outcome labels -> walk-forward evidence
-> fit -> calibrate -> a new model version with its artifact, metrics and provenance.

Honest by construction (:mod:`signalcast.lifecycle.evidence`): the family (``auto``: every
candidate family, and the one whose Brier skill against the causal base rate is surest is kept)
is evaluated on purged, embargoed walk-forward folds (purge = the target's horizon); its
calibrators are fitted on the pooled out-of-fold predictions; the stored metrics are those
held-out figures beside their benchmarks, with the skill gate that lets its alerts out. The
served model is refitted on every row: P(touch) on all rows (expired ones included) times
P(up first | touched). Running the same training twice on the same data returns the existing
version instead of adding a copy (the data fingerprint).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from signalcast.config import Settings, TargetConfig
from signalcast.config.models import AUTO, TrainingConfig
from signalcast.core.errors import DataError
from signalcast.core.timeframes import last_closed_open_time, utc
from signalcast.db.candles import read_candles
from signalcast.db.engine import session_scope
from signalcast.db.tables import ModelVersion
from signalcast.features import FEATURE_SET, MAX_LOOKBACK, feature_names
from signalcast.features.dataset import build_outcome_set
from signalcast.features.labels import EXPIRED, UP
from signalcast.lifecycle import admin as model_admin
from signalcast.lifecycle import evidence
from signalcast.lifecycle.states import purge_states
from signalcast.lifecycle.versioning import store_version
from signalcast.models import registry
from signalcast.models.artifact import ArtifactIdentity, sha256, sign

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


def train_result(version: ModelVersion) -> dict:
    """What a training's run record keeps of the version it made (the train task and the
    replay's inline training record the same)."""
    return {"asset": version.asset, "target": version.target, "family": version.family,
            "version": version.version, "model_version_id": version.id, "role": version.role,
            "metrics": version.metrics}


def drift_window(training: TrainingConfig, horizon: int, candles_since_change: int) -> int | None:
    """How many of the newest candles a drift retrain reads (None: the full
    ``training.history_candles``, as the scheduled retrain).

    ``candles_since_change``: candles from the start of the block where the alarm's CUSUM
    began its last rise (the change point it implies, :func:`signalcast.pipeline.drift.
    cusum_step`) to the newest closed candle. The window reaches one more block back (the
    change may lie anywhere in the block before the first rising one) plus the features'
    lookback (those rows only warm the features up); it holds at least ``drift_min_rows``
    usable rows (unset: ``min_rows``: a training refuses fewer), counting the ``horizon``
    newest candles whose labels are still pending. A window whose rows cannot make the
    walk-forward evidence (:func:`evidence_ready`) is doubled (:func:`widened`) by the training.

    >>> from signalcast.config.models import TrainingConfig
    >>> on = TrainingConfig(drift_window=True)
    >>> drift_window(on, 72, 2000)  # 2000 + 72 + 168
    2240
    >>> drift_window(on, 72, 100)  # the floor: 500 rows + 168 + 72
    740
    >>> drift_window(on, 72, 9000) is None  # not shorter than history_candles
    True
    >>> drift_window(TrainingConfig(), 72, 100) is None  # off by default: the full history
    True
    """
    if not training.drift_window:
        return None
    rows = training.min_rows if training.drift_min_rows is None else training.drift_min_rows
    candles = max(candles_since_change + horizon, rows + horizon) + MAX_LOOKBACK
    return None if candles >= training.history_candles else int(candles)


def widened(training: TrainingConfig, window: int) -> int | None:
    """The next window a drift retrain tries when ``window`` held too few rows for the
    walk-forward evidence (:func:`evidence_ready`): twice as many candles, None (the full
    history) once that reaches ``history_candles``. The bench widens the same way."""
    wider = 2 * window
    return None if wider >= training.history_candles else wider


def evidence_ready(training: TrainingConfig, positions: np.ndarray, labels: np.ndarray,
                   horizon: int) -> bool:
    """Whether rows at ``positions`` with three-outcome ``labels`` make a training: at least
    ``min_rows`` rows, 50 touching a level, and the walk-forward plan of
    :func:`signalcast.lifecycle.evidence.gather` (the same fold settings) with more usable
    folds than its one warm-up fold."""
    from signalcast.evaluation.folds import WalkForwardConfig, plan_folds

    touched = labels != EXPIRED
    if len(labels) < training.min_rows or touched.sum() < 50:
        return False
    cfg = WalkForwardConfig(folds=training.folds,
                            calibration_fraction=training.calibration_fraction,
                            min_fit_rows=min(200, training.min_rows))
    try:
        return len(plan_folds(positions, labels, horizon, cfg).folds) > 1
    except (DataError, ValueError):
        return False


def train_model(engine: Engine, settings: Settings, asset: str, target_key: str, family: str,
                *, now: datetime, progress: Progress | None = None,
                history_candles: int | None = None, reason: str | None = None) -> ModelVersion:
    """Train and store a new version (or return the identical existing one). ``family`` is a
    family name or ``auto`` (select among ``models.candidates`` by walk-forward evidence).

    ``history_candles``: read only that many of the newest candles (a drift retrain:
    :func:`drift_window`) instead of ``training.history_candles``; the version's ``train_start``
    shows the window, its ``metrics["window"]`` says why (``reason``: ``drift``), and a challenger
    trained so is audited as a ``drift_retrain`` model event. It is stored like any retrain (a
    challenger of the champion, judged by the promotion test).

    Reads in one short transaction, fits with no transaction open (a fit takes seconds and on
    SQLite a write transaction would block every other writer), and writes in another."""
    say = progress or (lambda _msg: None)
    asset_cfg, target = settings.asset(asset), settings.target(target_key)
    limit = settings.training.history_candles
    if history_candles is not None:
        limit = min(int(history_candles), limit)
    names = evidence.candidate_families(settings) if family == AUTO else [family]
    for name in names:  # fail fast on an unknown family, before any work
        registry.family_class(name)
    keys = settings.artifact_keys  # and on a missing artifact key
    request = {name: evidence.family_params(settings, name, target.horizon) for name in names}
    request["training"] = {"folds": settings.training.folds,
                           "bootstrap": settings.training.bootstrap,
                           "calibration_fraction": settings.training.calibration_fraction}

    end = last_closed_open_time(now, asset_cfg.timeframe)
    while True:  # one pass, unless a recent window is too short for the evidence
        say(f"loading candles (the last {limit})" if history_candles else "loading candles")
        with session_scope(engine, readonly=True) as session:
            candles = read_candles(session, asset_cfg.symbol, asset_cfg.timeframe, end=end,
                                   limit=limit)
            fingerprint = _fingerprint(candles, target, family, request)
            existing = _find_existing(session, asset_cfg.symbol, target.key, family,
                                      fingerprint)
        if existing is not None:
            say(f"already trained as v{existing.version}")
            return existing
        say("computing features and labels")
        data = build_outcome_set(candles, asset_cfg.timeframe, target.pct, target.horizon)
        if (history_candles is None or limit >= settings.training.history_candles
                or evidence_ready(settings.training, data.positions, data.labels,
                                  target.horizon)):
            break
        wider = widened(settings.training, limit) or settings.training.history_candles
        say(f"{len(data.labels)} rows in the last {limit} candles are too few for the "
            f"walk-forward evidence; widening to {wider}")
        limit = wider
    touched = data.labels != EXPIRED
    if len(data.labels) < settings.training.min_rows or touched.sum() < 50:
        raise DataError(
            f"{asset_cfg.symbol} {target.key}: only {len(data.labels)} rows with a resolved "
            f"label ({int(touched.sum())} touching a level; need {settings.training.min_rows} "
            "and 50); ingest more history")
    if len(np.unique(data.labels[touched] == UP)) < 2:
        raise DataError(f"{asset_cfg.symbol} {target.key}: training labels are all one class")

    say(f"walk-forward evidence for {', '.join(names)} ({settings.training.folds} folds, "
        f"purge {target.horizon})")
    try:
        found = evidence.gather(settings, data, target.horizon, family)
    except ValueError as exc:  # too few usable folds
        raise DataError(f"{asset_cfg.symbol} {target.key}: {exc}; ingest more history") from exc
    chosen = found.family
    params = request[chosen]
    say(f"fitting {chosen} on {len(data.labels)} rows")
    served = evidence.fit_served(found, data, params, target.horizon)
    metrics = evidence.metrics(found, served, data)
    if history_candles is not None:
        metrics["window"] = {"candles": int(len(candles)), "requested": int(history_candles),
                             "reason": reason or "requested"}
    blob = served.to_bytes()

    say("storing the new version")

    def build(number: int) -> ModelVersion:
        row = ModelVersion(
            asset=asset_cfg.symbol, target=target.key, family=chosen,
            version=number, feature_set=FEATURE_SET, features=feature_names(),
            params=served.model.get_params(), metrics=metrics,
            lib_versions=_lib_versions(chosen),
            train_start=utc(data.times[0]), train_end=utc(data.times[-1]),
            n_rows=int(len(data.labels)), data_fingerprint=fingerprint,
            sha256=sha256(blob), artifact=blob,
        )
        row.artifact_mac = sign(blob, ArtifactIdentity.of(row), keys)
        return row

    def placed(session: Session, row: ModelVersion) -> None:
        _assign_role(session, settings, row, requested=family)
        session.add(row)
        session.flush()
        if row.role == "champion":  # audited and announced in the same transaction
            model_admin.champion_trained(session, settings, row)
        elif reason == "drift" and "window" in metrics:
            model_admin.record_model_event(
                session, settings, "drift_retrain", row.asset, row.target, from_version=None,
                to_version=row, actor="drift",
                reason=(f"drift retrain on the last {len(candles)} candles (rows from "
                        f"{row.train_start:%Y-%m-%d %H:%M} UTC; the full window is "
                        f"{settings.training.history_candles}): a challenger, judged by the "
                        "promotion test"),
                stats={"window": metrics["window"], "train_start": row.train_start.isoformat(),
                       "train_end": row.train_end.isoformat(), "n_rows": row.n_rows})
        _purge_old_artifacts(session, settings, row)

    row = store_version(
        engine, asset_cfg.symbol, target.key, chosen, build, placed,
        find_existing=lambda session: _find_existing(session, asset_cfg.symbol, target.key,
                                                     family, fingerprint))
    auc = "n/a" if metrics["auc"] is None else f"{metrics['auc']:.3f}"
    gate = "open" if metrics["gate_open"] else "held"
    say(f"done: {chosen} v{row.version} skill {metrics['brier_skill']:+.3f} (lower "
        f"{metrics['skill_lower']:+.3f}), AUC {auc}; alerts {gate}")
    log.info("trained %s %s %s v%d (skill %+.4f, AUC %s, gate %s)", asset_cfg.symbol,
             target.key, chosen, row.version, metrics["brier_skill"], auc, gate)
    return row


def _find_existing(session: Session, asset: str, target: str, family: str,
                   fingerprint: str) -> ModelVersion | None:
    """The version this very training stored before (``auto`` stores the chosen family, so
    it is found by its fingerprint, which names the request)."""
    query = select(ModelVersion).where(
        ModelVersion.asset == asset, ModelVersion.target == target,
        ModelVersion.data_fingerprint == fingerprint)
    if family != AUTO:
        query = query.where(ModelVersion.family == family)
    return session.exec(query).first()


def _assign_role(session: Session, settings: Settings, row: ModelVersion, *,
                 requested: str) -> None:
    """The first version of the champion (the family chosen by evidence under ``auto``, else
    the configured family) serves; every later version enters as a challenger that shadows the
    champion (the router records it) until the promotion test or an operator promotes it, so a
    retrain never silently replaces what serves."""
    champion = settings.models.champion
    if not (requested == AUTO == champion or row.family == champion):
        return
    current = session.exec(select(ModelVersion.id).where(
        ModelVersion.asset == row.asset, ModelVersion.target == row.target,
        ModelVersion.role == "champion")).first()
    if current is None:
        row.role = "champion"


def _purge_old_artifacts(session: Session, settings: Settings, row: ModelVersion) -> None:
    """Keep the newest ``keep_versions`` artifacts per (asset, target, family); older versions
    keep their row (predictions refer to them) but lose their bytes. The champion and the
    ``routing.keep_champions`` latest earlier champions of (asset, target) are never purged,
    so a rollback and the ``previous_champion`` fallback always have a model to serve. A purged
    version's online states lose their bytes too, except those that served a prediction
    (:func:`signalcast.lifecycle.states.purge_states`)."""
    keep = set(model_admin.champion_history(session, row.asset, row.target)
               [:settings.routing.keep_champions + 1])
    versions = session.exec(select(ModelVersion).where(
        ModelVersion.asset == row.asset, ModelVersion.target == row.target,
        ModelVersion.family == row.family, ModelVersion.artifact.is_not(None))
        .order_by(ModelVersion.version.desc())).all()
    for old in versions[settings.models.keep_versions:]:
        if old.role != "champion" and old.id not in keep:
            old.artifact = None
            session.add(old)
            purge_states(session, old.id)
