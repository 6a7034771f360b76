"""SQLModel tables. Unique constraints carry the idempotency keys (docs/architecture.md), so a
task that runs twice changes nothing: the second insert is a no-op.

Times are stored as naive UTC and read back as aware UTC (:class:`UTCDateTime`), so SQLite and
Postgres behave the same.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, LargeBinary, UniqueConstraint, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, on every dialect."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass timezone-aware UTC times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _time(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


def _json(default: Any = None) -> Any:
    factory = dict if default is None else type(default)
    return Field(default_factory=factory, sa_column=Column(JSON, nullable=False))


class Candle(SQLModel, table=True):
    """A closed candle. The forming candle is never stored."""

    __tablename__ = "candles"
    asset: str = Field(primary_key=True, max_length=40)
    timeframe: str = Field(primary_key=True, max_length=8)
    time: datetime = _time(primary_key=True)  # open time, UTC
    open: float
    high: float
    low: float
    close: float
    volume: float


class ModelVersion(SQLModel, table=True):
    """A trained model: its artifact (bytes + sha256 + MAC) and everything needed to trust it."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("asset", "target", "family", "version"),
        # The same data, target, family and params train the same model: one version, even
        # when a train task is redelivered while the first run still works.
        UniqueConstraint("asset", "target", "family", "data_fingerprint"),
        # At most one champion per (asset, target), whoever writes (migration 0008).
        Index("uq_model_versions_one_champion", "asset", "target", unique=True,
              sqlite_where=text("role = 'champion'"), postgresql_where=text("role = 'champion'")),
    )
    id: int | None = Field(default=None, primary_key=True)
    asset: str = Field(max_length=40, index=True)
    target: str = Field(max_length=40)
    family: str = Field(max_length=40)
    version: int
    role: str = Field(default="challenger", max_length=16)  # champion | challenger | retired
    created_at: datetime = _time(default_factory=utcnow)
    feature_set: str = Field(max_length=16)
    features: list[str] = _json([])
    params: dict = _json()
    metrics: dict = _json()
    lib_versions: dict = _json()
    train_start: datetime = _time()
    train_end: datetime = _time()
    n_rows: int
    data_fingerprint: str = Field(max_length=64)
    sha256: str = Field(max_length=64)
    # HMAC-SHA256 of the artifact and this row's identity under a key kept outside the
    # database (signalcast.models.artifact); None: stored before signing, refused when loaded.
    artifact_mac: str | None = Field(default=None, max_length=64)
    artifact: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class Prediction(SQLModel, table=True):
    """One model's probability for one (asset, target, candle). Unique per model version."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("asset", "target", "model_version_id", "candle_time"),
        Index("ix_predictions_lookup", "asset", "target", "candle_time"),
    )
    id: int | None = Field(default=None, primary_key=True)
    asset: str = Field(max_length=40)
    target: str = Field(max_length=40)
    model_version_id: int = Field(foreign_key="model_versions.id")
    candle_time: datetime = _time()
    prob_up: float  # unconditional P(up level touched first)
    prob_down: float | None = None  # unconditional P(down first); None (old rows): 1 - prob_up
    served: bool = True  # False for shadow predictions (recorded, never alerted)
    role: str = Field(default="champion", max_length=16)
    fallback: str | None = Field(default=None, max_length=200)
    alert_held: str | None = Field(default=None, max_length=200)  # why no alert (skill gate)
    created_at: datetime = _time(default_factory=utcnow)
    # sha256 of the exact artifact that made it: the version's trained artifact or one of its
    # online states (model_states); None: recorded before 0011 (signalcast.lifecycle.states)
    model_sha256: str | None = Field(default=None, max_length=64)


class Outcome(SQLModel, table=True):
    """What the market did after a candle, by the one first-touch rule. Shared by all models."""

    __tablename__ = "outcomes"
    __table_args__ = (UniqueConstraint("asset", "target", "candle_time"),)
    id: int | None = Field(default=None, primary_key=True)
    asset: str = Field(max_length=40)
    target: str = Field(max_length=40)
    candle_time: datetime = _time()
    label: int  # 1 up, 0 down, -1 expired
    bars: int  # candles until the touch, 0 when expired
    resolved_at: datetime = _time(default_factory=utcnow)


class AlertOutbox(SQLModel, table=True):
    """An alert waiting to be sent, written in the same transaction as its prediction."""

    __tablename__ = "alert_outbox"
    __table_args__ = (
        UniqueConstraint("chat_id", "asset", "target", "candle_time", "kind"),
        Index("ix_alert_outbox_status", "status", "next_attempt_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    chat_id: str = Field(max_length=64)
    asset: str = Field(max_length=40)
    target: str = Field(max_length=40)
    candle_time: datetime = _time()
    kind: str = Field(max_length=16)  # signal | outcome | summary | model | system
    payload: dict = _json()
    status: str = Field(default="pending", max_length=16)  # pending | sending | sent | failed
    attempts: int = 0
    created_at: datetime = _time(default_factory=utcnow)
    next_attempt_at: datetime = _time(default_factory=utcnow)
    claimed_at: datetime | None = _time(default=None, nullable=True)
    sent_at: datetime | None = _time(default=None, nullable=True)
    last_error: str | None = Field(default=None, max_length=500)
    message_id: str | None = Field(default=None, max_length=64)


class TaskRun(SQLModel, table=True):
    """A task's life: attempts, status, progress and error, keyed by the Celery task id."""

    __tablename__ = "task_runs"
    id: int | None = Field(default=None, primary_key=True)
    task_id: str = Field(max_length=200, unique=True)
    name: str = Field(max_length=80, index=True)
    args: dict = _json()
    status: str = Field(default="running", max_length=16)  # running | done | failed
    attempts: int = 0
    progress: str | None = Field(default=None, max_length=500)
    result: dict = _json()
    error: str | None = Field(default=None, max_length=2000)
    started_at: datetime = _time(default_factory=utcnow)
    finished_at: datetime | None = _time(default=None, nullable=True)


class ScheduledEnqueue(SQLModel, table=True):
    """One row per (job, fire time): a scheduler tick is enqueued once, even after a restart.

    ``pending`` (committed before the publish), ``sent`` (published), then for ticks ``landed``
    or ``expired`` (scheduler/reconcile.py); ``signature`` is what was published, so a pending
    row can be published again; ``redos`` counts re-enqueues of lost work."""

    __tablename__ = "scheduled_enqueues"
    job: str = Field(primary_key=True, max_length=80)
    fire_time: datetime = _time(primary_key=True)
    enqueued_at: datetime = _time(default_factory=utcnow)
    task_ids: list[str] = _json([])
    status: str = Field(default="sent", max_length=16, index=True)
    sent_at: datetime | None = _time(default=None, nullable=True)
    deadline: datetime | None = _time(default=None, nullable=True)  # work after it is not done
    redos: int = 0
    signature: dict = _json()


class CandleGap(SQLModel, table=True):
    """Candles an exchange did not deliver (asked twice), for open times first..last_missing.

    Recorded so ticks do not ask again on every candle and ``signalcast status`` can report them;
    ``signalcast ingest --backfill`` asks again and marks the gap ``filled`` when data appears.
    """

    __tablename__ = "candle_gaps"
    asset: str = Field(primary_key=True, max_length=40)
    timeframe: str = Field(primary_key=True, max_length=8)
    first_missing: datetime = _time(primary_key=True)  # open time of the first missing candle
    last_missing: datetime = _time()  # open time of the last missing candle
    missing: int  # candles missing in between (both ends included)
    status: str = Field(default="open", max_length=16)  # open | filled
    reason: str = Field(default="", max_length=200)
    checks: int = 1  # how many times the exchange was asked
    first_seen: datetime = _time(default_factory=utcnow)
    last_checked: datetime = _time(default_factory=utcnow)
    filled_at: datetime | None = _time(default=None, nullable=True)


class ChatPref(SQLModel, table=True):
    """What one chat receives, as changed with /pause, /resume, /subscribe and /unsubscribe.

    A chat without a row receives what the configuration says (``alerts.kinds``) when it is a
    configured chat. ``enrolled`` True adds a chat that is not configured; False opts a
    configured chat out. ``kinds`` overrides a kind's delivery (on | silent | off).
    """

    __tablename__ = "chat_prefs"
    chat_id: str = Field(primary_key=True, max_length=64)
    enrolled: bool | None = Field(default=None, nullable=True)
    paused: bool = False
    kinds: dict = _json()
    muted_assets: list[str] = _json([])
    muted_targets: list[str] = _json([])
    updated_at: datetime = _time(default_factory=utcnow)
    updated_by: str | None = Field(default=None, max_length=80)


class AlertLastSent(SQLModel, table=True):
    """The last signal sent to a chat per (asset, target): a repeat with the same direction and
    confidence band before ``until`` (its candle time plus the horizon) is not sent again."""

    __tablename__ = "alert_last_sent"
    chat_id: str = Field(primary_key=True, max_length=64)
    asset: str = Field(primary_key=True, max_length=40)
    target: str = Field(primary_key=True, max_length=40)
    direction: str = Field(max_length=8)
    band: str = Field(max_length=16)
    candle_time: datetime = _time()
    until: datetime = _time()
    sent_at: datetime = _time(default_factory=utcnow)


class ModelEvent(SQLModel, table=True):
    """Audit log of champion changes and other model events: who, when, why, from/to version
    and the statistics that justified it."""

    __tablename__ = "model_events"
    __table_args__ = (Index("ix_model_events_lookup", "asset", "target", "created_at"),)
    id: int | None = Field(default=None, primary_key=True)
    asset: str = Field(max_length=40)
    target: str = Field(max_length=40)
    event: str = Field(max_length=24)  # retrained | promoted | rolled_back | fallback | drift
    from_version_id: int | None = Field(default=None, foreign_key="model_versions.id",
                                        nullable=True)
    to_version_id: int | None = Field(default=None, foreign_key="model_versions.id",
                                      nullable=True)
    from_label: str | None = Field(default=None, max_length=80)  # e.g. "lightgbm v3"
    to_label: str | None = Field(default=None, max_length=80)
    actor: str = Field(max_length=80)  # "telegram:123", "cli:alice", "training"
    reason: str = Field(default="", max_length=500)
    stats: dict = _json()
    created_at: datetime = _time(default_factory=utcnow)


class WorkerHeartbeat(SQLModel, table=True):
    """When each Celery worker last answered a ping (the system check's memory)."""

    __tablename__ = "worker_heartbeats"
    worker: str = Field(primary_key=True, max_length=200)
    first_seen: datetime = _time(default_factory=utcnow)
    last_seen: datetime = _time(default_factory=utcnow)


# The drainer's rate limiter reads the sends of the last minute.
Index("ix_alert_outbox_sent_at", AlertOutbox.__table__.c.sent_at)
# An outcome looks up the signal alerts of its candle; retention scans by age.
Index("ix_alert_outbox_candle", AlertOutbox.__table__.c.asset, AlertOutbox.__table__.c.target,
      AlertOutbox.__table__.c.candle_time, AlertOutbox.__table__.c.kind)
Index("ix_alert_outbox_created_at", AlertOutbox.__table__.c.created_at)
# The failed-task scan (system alerts, status) and retention read runs by status and end time.
Index("ix_task_runs_status_finished", TaskRun.__table__.c.status, TaskRun.__table__.c.finished_at)
# Retention of enqueues by fire time.
Index("ix_scheduled_enqueues_fire_time", ScheduledEnqueue.__table__.c.fire_time)


# -- routing: run-time overrides, circuit breakers, online learning, promotion checks ----------


class RoutingOverride(SQLModel, table=True):
    """A run-time change of how one (asset, target) is routed, read on every prediction: a value
    that is set replaces the configured one (``routing``), None keeps the configured one."""

    __tablename__ = "routing_overrides"
    asset: str = Field(primary_key=True, max_length=40)
    target: str = Field(primary_key=True, max_length=40)
    shadows: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    ab_share: float | None = Field(default=None, nullable=True)
    ab_challenger: str | None = Field(default=None, max_length=40, nullable=True)
    updated_at: datetime = _time(default_factory=utcnow)
    updated_by: str = Field(default="", max_length=80)


class ModelBreaker(SQLModel, table=True):
    """The circuit breaker of one model version, shared by every worker process.

    Times are candle times (the clock of the prediction that tried the model), so a replay on a
    simulated clock behaves like live serving and a prediction run twice counts once.
    """

    __tablename__ = "model_breakers"
    model_version_id: int = Field(primary_key=True, foreign_key="model_versions.id")
    state: str = Field(default="closed", max_length=16)  # closed | open
    failures: int = 0  # consecutive failures
    opened_at: datetime | None = _time(default=None, nullable=True)
    last_candle: datetime | None = _time(default=None, nullable=True)  # newest counted attempt
    last_error: str | None = Field(default=None, max_length=300)
    updated_at: datetime = _time(default_factory=utcnow)


class DriftState(SQLModel, table=True):
    """The drift detector of one champion version (signalcast.stats.drift): the newest block
    of ``horizon`` candles it has seen and its CUSUM state, updated block by block."""

    __tablename__ = "drift_states"
    model_version_id: int = Field(primary_key=True, foreign_key="model_versions.id")
    last_block: int  # index of the newest block counted (candle grid of horizon candles)
    blocks: int = 0  # blocks counted since the champion started serving
    alarms: int = 0
    state: dict = _json()
    updated_at: datetime = _time(default_factory=utcnow)


class ModelState(SQLModel, table=True):
    """One state of a version that learns online, appended, never overwritten: state 0 is the
    trained artifact, state k the model after the k-th batch of learned outcomes. Signed like
    any artifact (signalcast.models.artifact); predictions name theirs by ``model_sha256``
    (signalcast.lifecycle.states)."""

    __tablename__ = "model_states"
    __table_args__ = (UniqueConstraint("model_version_id", "state"),
                      Index("ix_model_states_sha256", "model_version_id", "sha256"))
    id: int | None = Field(default=None, primary_key=True)
    model_version_id: int = Field(foreign_key="model_versions.id")
    state: int  # 0: as trained; k: after k online updates
    created_at: datetime = _time(default_factory=utcnow)
    learned: int = 0  # outcomes learned online in total when this state was made
    last_candle: datetime | None = _time(default=None, nullable=True)  # newest learned
    sha256: str = Field(max_length=64)
    artifact_mac: str | None = Field(default=None, max_length=64)
    artifact: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class OnlineLearned(SQLModel, table=True):
    """A resolved outcome an online model version has learned: each is learned once."""

    __tablename__ = "online_learned"
    model_version_id: int = Field(primary_key=True, foreign_key="model_versions.id")
    candle_time: datetime = _time(primary_key=True)
    label: int
    learned_at: datetime = _time(default_factory=utcnow)


class PromotionCheck(SQLModel, table=True):
    """One champion-vs-challenger comparison on their shared resolved outcomes: the decision
    (promoted | qualified | kept) and the test statistics. Re-checking the same outcomes adds
    nothing (unique per pair and sample size)."""

    __tablename__ = "promotion_checks"
    __table_args__ = (
        UniqueConstraint("champion_version_id", "challenger_version_id", "n_shared"),
        Index("ix_promotion_checks_lookup", "asset", "target", "evaluated_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    asset: str = Field(max_length=40)
    target: str = Field(max_length=40)
    champion_version_id: int = Field(foreign_key="model_versions.id")
    challenger_version_id: int = Field(foreign_key="model_versions.id")
    n_shared: int
    decision: str = Field(max_length=16)
    stats: dict = _json()
    evaluated_at: datetime = _time(default_factory=utcnow)
