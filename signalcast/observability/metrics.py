"""Prometheus metrics for our own figures, read from the database and Redis at scrape time.

Every figure already lives in the database (predictions, outcomes, the alert outbox, model
versions, task runs) or in Redis (queue lengths), written by whichever worker process did the
work. So instead of counters inside Celery's prefork children (which would need
prometheus_client's multiprocess mode and a shared directory per host), one small process,
``signalcast metrics``, asks the database and Redis when Prometheus scrapes. Any number of
worker processes on any number of hosts are counted once, a restarted exporter loses nothing,
and the counters are the table counts themselves.

A scrape's cost does not grow with the stored history: prediction and outcome counters are
running totals kept by the exporter (rows up to a settled id are counted once, only the newest
``SETTLE_IDS`` ids are recounted each scrape), the other queries read indexed recent rows or
tables that retention keeps small (``signalcast db prune``), and the database figures are
reused for ``cache_seconds`` (the CLI's exporter: 10 s) when scrapes come faster.

Latencies are quantiles over a recent window (default one hour), exposed as gauges with a
``quantile`` label: candle close -> prediction stored (``tick_to_stored``) and candle close ->
alert sent. Celery's own per-worker figures come from Flower's ``/metrics``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import and_, case, func, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from signalcast.config import Settings
from signalcast.core.timeframes import timeframe_to_timedelta
from signalcast.db.engine import session_scope
from signalcast.db.tables import (
    AlertOutbox,
    Candle,
    CandleGap,
    ModelVersion,
    Outcome,
    Prediction,
    ScheduledEnqueue,
    TaskRun,
)
from signalcast.features.labels import DOWN, UP
from signalcast.observability.tally import SETTLE_IDS, RunningTally  # noqa: F401 (docs)

log = logging.getLogger(__name__)

QUANTILES = (0.5, 0.95, 1.0)
LATENCY_ROWS = 20_000  # newest rows of the window used for a latency quantile
METRIC_NAMES = (  # every family this module exposes (docs/production.md lists them)
    "signalcast_up", "signalcast_database_up", "signalcast_broker_up",
    "signalcast_scrape_duration_seconds",
    "signalcast_predictions_served_total", "signalcast_predictions_shadow_total",
    "signalcast_prediction_fallbacks_total",
    "signalcast_outcomes_resolved_total", "signalcast_outcome_hits_total",
    "signalcast_outcome_ups_total", "signalcast_live_hit_rate", "signalcast_live_majority_rate",
    "signalcast_model_age_seconds", "signalcast_last_candle_timestamp_seconds",
    "signalcast_open_candle_gaps", "signalcast_last_tick_timestamp_seconds",
    "signalcast_tick_to_stored_seconds", "signalcast_alert_latency_seconds",
    "signalcast_alerts_sent_total", "signalcast_alerts_failed_total",
    "signalcast_alerts_waiting", "signalcast_alert_oldest_waiting_seconds",
    "signalcast_task_runs", "signalcast_queue_depth", "signalcast_broker_unacked_messages",
)


def quantiles(values: Iterable[float], qs: Iterable[float] = QUANTILES) -> dict[float, float]:
    """Nearest-rank quantiles of ``values`` ({} when there are none).

    >>> quantiles([4, 1, 3, 2], (0.5, 1.0))
    {0.5: 2, 1.0: 4}
    """
    ordered = sorted(values)
    if not ordered:
        return {}
    return {q: ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
            for q in qs}


class SignalcastCollector:
    """A prometheus_client collector: each :meth:`collect` queries the database and Redis.

    ``clock`` is injectable for tests; ``window`` bounds the latency quantiles. A database or
    broker that does not answer turns its ``*_up`` gauge to 0 instead of failing the scrape.
    """

    def __init__(self, engine: Engine, settings: Settings, *,
                 window: timedelta = timedelta(hours=1),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 cache_seconds: float = 0.0):
        self.engine, self.settings, self.window, self.clock = engine, settings, window, clock
        self._timeframes = {a.symbol: timeframe_to_timedelta(a.timeframe)
                            for a in settings.assets}
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, list[Metric]] | None = None
        self._predicted = RunningTally(Prediction)
        self._resolved = RunningTally(Outcome, sums=3)  # resolved, hits, ups

    def describe(self) -> list[Metric]:
        return []  # registering must not query the database

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        yield GaugeMetricFamily("signalcast_up", "1 while the metrics exporter answers", 1)
        now = self.clock()
        database_up = 1
        try:
            families = self._database_families(now)
        except Exception as exc:  # report the outage as a figure, keep serving the rest
            log.warning("metrics: database query failed: %s", exc)
            families, database_up = [], 0
        yield from families
        yield GaugeMetricFamily("signalcast_database_up",
                                "1 when the database answered this scrape", database_up)
        yield from self._broker_metrics()
        yield GaugeMetricFamily("signalcast_scrape_duration_seconds",
                                "seconds this scrape spent querying",
                                time.perf_counter() - started)

    # -- database ----------------------------------------------------------------------------

    def _database_families(self, now: datetime) -> list[Metric]:
        if self._cached is not None and time.monotonic() - self._cached[0] < self.cache_seconds:
            return self._cached[1]
        with session_scope(self.engine, readonly=True) as session:
            families = list(self._database_metrics(session, now))
        self._cached = (time.monotonic(), families)
        return families

    def _database_metrics(self, session: Session, now: datetime) -> Iterator[Metric]:
        yield from self._predictions(session)
        yield from self._outcomes(session)
        yield from self._models_and_candles(session, now)
        yield from self._latencies(session, now)
        yield from self._alerts(session, now)
        yield from self._tasks(session)

    def _predictions(self, session: Session) -> Iterator[Metric]:
        served = CounterMetricFamily(
            "signalcast_predictions_served_total",
            "predictions served (the ones alerts are built from)", labels=["asset", "target"])
        shadow = CounterMetricFamily(
            "signalcast_predictions_shadow_total",
            "shadow predictions (recorded for comparison, never alerted)",
            labels=["asset", "target"])
        fallbacks = CounterMetricFamily(
            "signalcast_prediction_fallbacks_total",
            "served predictions made by a fallback model because the chosen one failed",
            labels=["asset", "target"])
        totals = self._predicted.totals(session, lambda lo, hi: session.exec(select(
            Prediction.asset, Prediction.target, Prediction.served, func.count(),
            func.sum(case((Prediction.fallback.is_not(None), 1), else_=0)),
        ).where(Prediction.id > lo, Prediction.id <= hi)
            .group_by(Prediction.asset, Prediction.target, Prediction.served)).all())
        for (asset, target, is_served), (count, fallback_count) in totals:
            if is_served:
                served.add_metric([asset, target], count)
                fallbacks.add_metric([asset, target], fallback_count or 0)
            else:
                shadow.add_metric([asset, target], count)
        yield from (served, shadow, fallbacks)

    def _outcomes(self, session: Session) -> Iterator[Metric]:
        """Hit rate of served predictions, by the rule of ``ops.summary.says_up``: a hit when
        the more likely direction (P(up) >= P(down); rows from before three outcomes:
        P(down) = 1 - P(up)) is the one that touched first; beside it, the up count, so
        "always the majority direction" is known on the same outcomes."""
        prob_down = func.coalesce(Prediction.prob_down, 1.0 - Prediction.prob_up)
        hit = case((or_(and_(Prediction.prob_up >= prob_down, Outcome.label == UP),
                        and_(Prediction.prob_up < prob_down, Outcome.label == DOWN)), 1),
                   else_=0)
        went_up = case((Outcome.label == UP, 1), else_=0)
        rows = self._resolved.totals(session, lambda lo, hi: session.exec(
            select(Prediction.asset, Prediction.target, func.count(), func.sum(hit),
                   func.sum(went_up))
            .join(Outcome, (Outcome.asset == Prediction.asset)
                  & (Outcome.target == Prediction.target)
                  & (Outcome.candle_time == Prediction.candle_time))
            .where(Prediction.served, Outcome.label.in_([UP, DOWN]), Outcome.id > lo,
                   Outcome.id <= hi)
            .group_by(Prediction.asset, Prediction.target)).all())
        resolved = CounterMetricFamily(
            "signalcast_outcomes_resolved_total",
            "served predictions whose target resolved UP or DOWN", labels=["asset", "target"])
        hits = CounterMetricFamily(
            "signalcast_outcome_hits_total",
            "resolved served predictions whose more likely direction happened",
            labels=["asset", "target"])
        ups = CounterMetricFamily(
            "signalcast_outcome_ups_total",
            "resolved served predictions whose up level touched first",
            labels=["asset", "target"])
        rate = GaugeMetricFamily(
            "signalcast_live_hit_rate", "hits / resolved over all served predictions",
            labels=["asset", "target"])
        majority = GaugeMetricFamily(
            "signalcast_live_majority_rate",
            "the hit rate's benchmark: always the majority direction on the same outcomes",
            labels=["asset", "target"])
        for (asset, target), (count, hit_count, up_count) in rows:
            if not count:
                continue
            resolved.add_metric([asset, target], count)
            hits.add_metric([asset, target], hit_count or 0)
            ups.add_metric([asset, target], up_count or 0)
            rate.add_metric([asset, target], (hit_count or 0) / count)
            majority.add_metric([asset, target], max(up_count or 0, count - (up_count or 0))
                                / count)
        yield from (resolved, hits, ups, rate, majority)

    def _models_and_candles(self, session: Session, now: datetime) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            "signalcast_model_age_seconds", "seconds since the champion version was trained",
            labels=["asset", "target", "family"])
        for asset, target, family, created in session.exec(select(
                ModelVersion.asset, ModelVersion.target, ModelVersion.family,
                ModelVersion.created_at).where(ModelVersion.role == "champion")).all():
            age.add_metric([asset, target, family], (now - _as_utc(created)).total_seconds())
        yield age
        newest = GaugeMetricFamily(
            "signalcast_last_candle_timestamp_seconds",
            "open time of the newest stored closed candle (unix seconds)", labels=["asset"])
        for asset, stamp in session.exec(select(Candle.asset, func.max(Candle.time))
                                         .group_by(Candle.asset)).all():
            newest.add_metric([asset], _as_utc(stamp).timestamp())
        yield newest
        gaps = GaugeMetricFamily("signalcast_open_candle_gaps",
                                 "candles the exchange did not deliver (open gaps)",
                                 labels=["asset"])
        for asset, missing in session.exec(
                select(CandleGap.asset, func.sum(CandleGap.missing))
                .where(CandleGap.status == "open").group_by(CandleGap.asset)).all():
            gaps.add_metric([asset], missing or 0)
        yield gaps
        last_tick = session.exec(select(func.max(ScheduledEnqueue.fire_time))
                                 .where(ScheduledEnqueue.job.like("tick:%"))).one()
        if last_tick is not None:
            yield GaugeMetricFamily("signalcast_last_tick_timestamp_seconds",
                                    "open time of the candle the newest tick predicts "
                                    "(one to two timeframes old while ticks run)",
                                    _as_utc(last_tick).timestamp())

    def _latencies(self, session: Session, now: datetime) -> Iterator[Metric]:
        since = now - self.window
        stored = []
        for asset in self.settings.assets:  # per (asset, target): the lookup index applies
            for target in self.settings.targets:
                stored += session.exec(
                    select(Prediction.asset, Prediction.candle_time, Prediction.created_at)
                    .where(Prediction.asset == asset.symbol, Prediction.target == target.key,
                           Prediction.candle_time >= since - self._timeframes[asset.symbol],
                           Prediction.created_at >= since, Prediction.served)
                    .limit(LATENCY_ROWS)).all()
        yield self._latency_family(
            "signalcast_tick_to_stored_seconds",
            "candle close -> served prediction stored, over the window", stored)
        sent = session.exec(
            select(AlertOutbox.asset, AlertOutbox.candle_time, AlertOutbox.sent_at)
            .where(AlertOutbox.kind == "signal", AlertOutbox.status == "sent",
                   AlertOutbox.sent_at >= since)
            .order_by(AlertOutbox.sent_at.desc()).limit(LATENCY_ROWS)).all()
        yield self._latency_family(
            "signalcast_alert_latency_seconds",
            "candle close -> signal alert sent, over the window", sent)

    def _latency_family(self, name: str, doc: str, rows) -> Metric:
        family = GaugeMetricFamily(name, f"{doc} ({self.window.total_seconds():g} s)",
                                   labels=["quantile"])
        seconds = [(_as_utc(done) - (_as_utc(candle) + self._timeframes[asset]))
                   .total_seconds() for asset, candle, done in rows
                   if asset in self._timeframes and done is not None]
        for q, value in quantiles(seconds).items():
            family.add_metric([f"{q:g}"], value)
        return family

    def _alerts(self, session: Session, now: datetime) -> Iterator[Metric]:
        sent = CounterMetricFamily("signalcast_alerts_sent_total", "alerts delivered",
                                   labels=["kind"])
        failed = CounterMetricFamily("signalcast_alerts_failed_total",
                                     "alerts given up on (see alert_outbox.last_error)",
                                     labels=["kind"])
        waiting = GaugeMetricFamily("signalcast_alerts_waiting",
                                    "alerts in the outbox not yet delivered", labels=["kind"])
        rows = session.exec(select(AlertOutbox.kind, AlertOutbox.status, func.count(),
                                   func.min(AlertOutbox.created_at))
                            .group_by(AlertOutbox.kind, AlertOutbox.status)).all()
        oldest: datetime | None = None
        for kind, status, count, first in rows:
            if status == "sent":
                sent.add_metric([kind], count)
            elif status == "failed":
                failed.add_metric([kind], count)
            else:
                waiting.add_metric([kind], count)
                oldest = min(oldest or _as_utc(first), _as_utc(first))
        yield from (sent, failed, waiting)
        yield GaugeMetricFamily(
            "signalcast_alert_oldest_waiting_seconds",
            "age of the oldest undelivered alert (0 when none waits)",
            0 if oldest is None else max(0.0, (now - oldest).total_seconds()))

    def _tasks(self, session: Session) -> Iterator[Metric]:
        runs = GaugeMetricFamily("signalcast_task_runs", "recorded task runs by status",
                                 labels=["task", "status"])
        for name, status, count in session.exec(
                select(TaskRun.name, TaskRun.status, func.count())
                .group_by(TaskRun.name, TaskRun.status)).all():
            runs.add_metric([name, status], count)
        yield runs

    # -- broker ------------------------------------------------------------------------------

    def _broker_metrics(self) -> Iterator[Metric]:
        url = self.settings.env.broker_url
        if url is None:  # embedded mode: no queues outside the process
            return
        from signalcast.ops.cluster import queue_depths

        depth = GaugeMetricFamily("signalcast_queue_depth", "messages waiting per queue",
                                  labels=["queue"])
        try:
            import redis

            for queue, count in queue_depths(url).items():
                depth.add_metric([queue], count)
            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            try:
                unacked = client.hlen("unacked")
            finally:
                client.close()
        except Exception as exc:
            log.warning("metrics: broker query failed: %s", exc)
            yield GaugeMetricFamily("signalcast_broker_up", "1 when Redis answered", 0)
            return
        yield depth
        yield GaugeMetricFamily(
            "signalcast_broker_unacked_messages",
            "messages delivered to workers and not yet acknowledged (running or reserved)",
            unacked)
        yield GaugeMetricFamily("signalcast_broker_up", "1 when Redis answered", 1)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class MetricsServer:
    """``/metrics`` over HTTP for one collector: prometheus_client's own server
    (:func:`~prometheus_client.start_http_server`, a threading WSGI server in a daemon thread).

    >>> server = MetricsServer(registry=CollectorRegistry(), port=0).start()
    >>> server.port > 0
    True
    >>> server.close()
    """

    def __init__(self, collector: SignalcastCollector | None = None, *,
                 host: str = "127.0.0.1", port: int = 9108,
                 registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        if collector is not None:
            self.registry.register(collector)
        self.host, self.port = host, port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> MetricsServer:
        """Listen (port 0: any free port, then read back in ``port``) and serve in a thread."""
        self._server, self._thread = start_http_server(self.port, addr=self.host,
                                                       registry=self.registry)
        self.port = self._server.server_port
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
