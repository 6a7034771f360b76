"""SQLModel tables. Unique constraints carry the idempotency keys of DESIGN.md, so a task that
runs twice changes nothing: the second insert is a no-op.

Times are stored as naive UTC and read back as aware UTC (:class:`UTCDateTime`), so SQLite and
Postgres behave the same.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, LargeBinary, UniqueConstraint
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
    """A trained model: its artifact (bytes + sha256) and everything needed to trust it."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("asset", "target", "family", "version"),
        # The same data, target, family and params train the same model: one version, even
        # when a train task is redelivered while the first run still works.
        UniqueConstraint("asset", "target", "family", "data_fingerprint"),
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
    prob_up: float
    served: bool = True  # False for shadow predictions (recorded, never alerted)
    role: str = Field(default="champion", max_length=16)
    fallback: str | None = Field(default=None, max_length=200)
    created_at: datetime = _time(default_factory=utcnow)


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
    """One row per (job, fire time): a scheduler tick is enqueued once, even after a restart."""

    __tablename__ = "scheduled_enqueues"
    job: str = Field(primary_key=True, max_length=80)
    fire_time: datetime = _time(primary_key=True)
    enqueued_at: datetime = _time(default_factory=utcnow)
    task_ids: list[str] = _json([])
