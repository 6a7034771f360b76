"""Thin Celery tasks: parse primitives, call one service function, record the run.

Arguments are ids and primitives (JSON); each task re-reads state itself. Every task is
idempotent (database unique keys), so a retry or a redelivery changes nothing. Temporary outages
(database or broker hiccups) are retried with backoff; domain errors (bad data, unknown names)
fail at once with their message recorded on the task run.

Retries live in one layer per operation (docs/reliability.md): an exchange call and a late
candle are retried inside ``ingest`` by the exchange layer (``data.max_retries``, backoff,
Retry-After), so Celery retries ``ingest`` only for database outages; everything else that is
temporary is retried here, by Celery. Trainings (the ``train`` queue) are acknowledged on
receipt and retried at once when their pool child dies (``retry_on_worker_lost``); a dead
host's training is re-enqueued by the reconciler.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime

from celery import Task
from sqlalchemy.exc import OperationalError

from signalcast.config.runtime import get_settings
from signalcast.core.errors import TemporaryError
from signalcast.core.logs import log_context
from signalcast.db.engine import get_engine, session_scope
from signalcast.ops.runs import recorded_run, work_settled
from signalcast.tasks.app import app

log = logging.getLogger(__name__)

RETRY = {"autoretry_for": (TemporaryError, OperationalError), "retry_backoff": 2,
         "retry_backoff_max": 120, "retry_jitter": True, "max_retries": 8}
DB_RETRY = {**RETRY, "autoretry_for": (OperationalError,)}  # the exchange layer retries its own
# the train queue: acknowledged on receipt (its hours-long work never waits on the short
# visibility timeout); a killed pool child is retried after a few seconds
TRAIN = {**RETRY, "acks_late": False, "retry_on_worker_lost": True, "default_retry_delay": 3}
DRAIN_POLL_MAX_SECONDS = 2.0
# A tick's drain polls for its work at most this often (about 5 minutes at the 2 s cap), then
# drains anyway: a tick whose work never settles (lost, then redone under fresh ids with a
# drain of its own) must not keep a drain polling the database until its deadline.
DRAIN_MAX_POLLS = 150


def _engine():
    return get_engine(get_settings().env.database_url)


def _run_id(task: Task) -> str:
    """The Celery task id; a direct call (no worker) gets a fresh one."""
    return task.request.id or f"local-{uuid.uuid4()}"


@contextmanager
def _recorded(task: Task, name: str, args: dict):
    """The task's run record (attempts, progress, result, error; gives up on lost workers),
    with task id, name, asset and target on every log line inside it."""
    run_id = _run_id(task)
    fields = {k: args[k] for k in ("asset", "target", "family") if k in args}
    with log_context(task_id=run_id, task=name, **fields), \
            recorded_run(_engine(), run_id, task.request.retries, name, args) as run:
        yield run


def _when(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


@app.task(name="signalcast.ingest", bind=True, **DB_RETRY)
def ingest(self: Task, asset: str, now: str) -> dict:
    from signalcast.pipeline.ingest import ingest_asset

    with _recorded(self, "ingest", {"asset": asset, "now": now}) as run:
        with session_scope(_engine()) as session:
            run.result = ingest_asset(session, get_settings(), asset, _when(now))
        return run.result


@app.task(name="signalcast.predict", bind=True, **RETRY)
def predict(self: Task, asset: str, candle_time: str, deadline: str | None = None) -> dict:
    """Predict ``asset`` at ``candle_time``; after ``deadline`` (the tick's: the candle's next
    close) nothing is predicted and the run says why."""
    from signalcast.pipeline.predict import predict_candle

    args = {"asset": asset, "candle_time": candle_time}
    with _recorded(self, "predict", args) as run:
        if deadline is not None and datetime.now(UTC) > _when(deadline):
            run.result = {"asset": asset, **_too_late(asset, candle_time, deadline)}
            return run.result
        predict_candle(_engine(), get_settings(), asset, _when(candle_time),
                       before_commit=lambda session, result: run.finish_in(session,
                                                                           result.to_dict()))
        return run.result


@app.task(name="signalcast.ingest_assets", bind=True, **DB_RETRY)
def ingest_assets(self: Task, assets: list[str], now: str) -> dict:
    """A batch of ``ingest`` (``schedule.tick_batch_assets``): one run for several assets,
    each in its own transaction; an asset that fails is reported, the others go on."""
    from signalcast.pipeline.ingest import ingest_assets as ingest_many

    with _recorded(self, "ingest_assets", {"assets": assets, "now": now}) as run:
        run.result = ingest_many(_engine(), get_settings(), list(assets), _when(now))
        return run.result


@app.task(name="signalcast.predict_assets", bind=True, **RETRY)
def predict_assets(self: Task, assets: list[str], candle_time: str,
                   deadline: str | None = None) -> dict:
    """A batch of ``predict`` (``schedule.tick_batch_assets``): every asset's reads and model
    calls in one transaction, every asset's rows in one more, the run recorded done in it."""
    from signalcast.pipeline.predict import predict_candles

    with _recorded(self, "predict_assets", {"assets": assets, "candle_time": candle_time}) as run:
        if deadline is not None and datetime.now(UTC) > _when(deadline):
            run.result = _too_late(", ".join(assets), candle_time, deadline)
            return run.result
        predict_candles(_engine(), get_settings(), list(assets), _when(candle_time),
                        before_commit=run.finish_in)
        return run.result


def _too_late(what: str, candle_time: str, deadline: str) -> dict:
    why = (f"too late: the tick's deadline {deadline} passed (the candle's next close); "
           "a signal now would carry the price levels of then")
    log.warning("%s at %s: %s", what, candle_time, why)
    return {"candle_time": candle_time, "predictions": 0, "alerts": 0, "skipped": {"*": why},
            "expired": True}


@app.task(name="signalcast.resolve", bind=True, **RETRY)
def resolve(self: Task, asset: str, now: str) -> dict:
    from signalcast.pipeline.learn import learn_from_outcomes
    from signalcast.pipeline.resolve import resolve_asset
    from signalcast.tasks.enqueuer import CeleryEnqueuer

    with _recorded(self, "resolve", {"asset": asset, "now": now}) as run:
        outcomes = resolve_asset(_engine(), get_settings(), asset, _when(now))
        learned = learn_from_outcomes(_engine(), get_settings(), asset, _when(now),
                                      enqueuer=CeleryEnqueuer())
        run.result = {"asset": asset, "outcomes": outcomes, "online": learned.to_dict()}
        return run.result


@app.task(name="signalcast.train", bind=True, **TRAIN)
def train(self: Task, asset: str, target: str, family: str, now: str,
          history_candles: int | None = None) -> dict:
    """Train one (asset, target, family); ``history_candles`` (a drift retrain's recent window;
    messages queued before it existed have none) reads only that many newest candles."""
    from signalcast.lifecycle.train import train_model, train_result

    args = {"asset": asset, "target": target, "family": family, "now": now}
    if history_candles is not None:
        args["history_candles"] = int(history_candles)
    with _recorded(self, "train", args) as run:
        version = train_model(_engine(), get_settings(), asset, target, family,
                              now=_when(now), progress=run.progress,
                              history_candles=history_candles,
                              reason=None if history_candles is None else "drift")
        run.result = train_result(version)
        return run.result


@app.task(name="signalcast.train_asset", bind=True, **TRAIN)
def train_asset(self: Task, asset: str, targets: list[str], family: str, now: str) -> dict:
    """Train ``family`` for each of ``targets`` of one asset in this process, one after the
    other: the asset's features are computed once and shared by every target, family and
    walk-forward fold (``features.dataset.shared_features``), wherever the task lands. The
    scheduled retrain sends one per asset. A retry trains the targets again; a training of
    the same data returns the version it made before."""
    from signalcast.features.dataset import FEATURE_STATS
    from signalcast.lifecycle.train import train_model

    args = {"asset": asset, "targets": list(targets), "family": family, "now": now}
    with _recorded(self, "train_asset", args) as run:
        versions, before = [], dict(FEATURE_STATS)
        for i, target in enumerate(targets, 1):
            def say(message: str, target: str = target, i: int = i) -> None:
                run.progress(f"{target} ({i}/{len(targets)}): {message}")

            version = train_model(_engine(), get_settings(), asset, target, family,
                                  now=_when(now), progress=say)
            versions.append({"target": version.target, "family": version.family,
                             "version": version.version, "model_version_id": version.id,
                             "role": version.role})
        # this process's feature computations during the run (1: shared by every target; 0:
        # an earlier task here already computed this history)
        run.result = {"asset": asset, "versions": versions,
                      "features_computed": FEATURE_STATS["computed"] - before["computed"],
                      "features_reused": FEATURE_STATS["reused"] - before["reused"]}
        return run.result


@app.task(name="signalcast.evaluate_promotions", bind=True, **TRAIN)
def evaluate_promotions(self: Task, now: str) -> dict:
    from signalcast.lifecycle.promote import promotion_round

    with _recorded(self, "evaluate_promotions", {"now": now}) as run:
        run.result = {"comparisons": promotion_round(_engine(), get_settings(), _when(now))}
        return run.result


@app.task(name="signalcast.send_alerts", bind=True, **RETRY)
def send_alerts(self: Task, after: list[list[str]] | None = None,
                until: str | None = None) -> dict:
    """Drain the outbox. A tick's drain names its assets' work (``after``: per asset the
    ingest, predict and resolve task ids) and re-schedules itself (a short countdown, no
    worker blocked) until each asset's work has a final record, ``until`` passed or it polled
    ``DRAIN_MAX_POLLS`` times."""
    from signalcast.alerts.drain import drain_outbox
    from signalcast.notifier.transports import transports_for

    if (after and self.request.retries < DRAIN_MAX_POLLS and datetime.now(UTC) < _when(until)
            and not work_settled(_engine(), after)):
        raise self.retry(countdown=min(DRAIN_POLL_MAX_SECONDS, 0.05 * 2**self.request.retries),
                         max_retries=None)
    with _recorded(self, "send_alerts", {}) as run:
        settings = get_settings()
        run.result = drain_outbox(_engine(), transports_for(settings), settings=settings).to_dict()
        return run.result


@app.task(name="signalcast.ping", acks_late=False)
def ping() -> str:
    """A no-op round trip: health probes and the engine-ceiling benchmark use it."""
    return "pong"
