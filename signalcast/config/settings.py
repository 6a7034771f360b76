"""Settings: one typed, validated object built from a YAML file plus the environment.

The YAML file holds what operators tune (assets, targets, models, schedules); the environment
(``SIGNALCAST_*``, also read from a ``.env`` file) holds secrets and service URLs. Everything is
validated once, at start-up; an invalid value stops start-up with :class:`ConfigError` naming the
field and the fix, e.g. ``targets[1].pct must be > 0, got -0.02``.
"""

from __future__ import annotations

import difflib
import os
from datetime import UTC, datetime
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from signalcast.core.errors import ConfigError, UnknownNameError
from signalcast.core.timeframes import timeframe_to_timedelta

DEFAULT_CONFIG = "default.yaml"


def _require_unique(values: list[str], what: str) -> None:
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError(f"must list each {what}; repeated: {', '.join(dupes)}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AssetConfig(_Section):
    symbol: str = Field(min_length=1)
    timeframe: str = "1h"
    # The exchange's name for the market when it differs from ``symbol`` (data.source exchange),
    # e.g. symbol "BTC/USD" stored and shown, exchange_symbol "BTC/USDT" fetched.
    exchange_symbol: str | None = Field(default=None, min_length=1)

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, value: str) -> str:
        try:
            timeframe_to_timedelta(value)
        except ConfigError as exc:  # pydantic attaches the field path to ValueError only
            raise ValueError(str(exc).removeprefix("timeframe ")) from None
        return value


class TargetConfig(_Section):
    """Touch ``+pct`` before ``-pct`` within ``horizon`` candles."""

    pct: float = Field(gt=0, lt=1)
    horizon: int = Field(ge=1, le=10_000)
    alert_threshold: float = Field(default=0.75, gt=0.5, le=1)

    @property
    def key(self) -> str:
        """Stable identifier, e.g. ``2pct_72`` for +-2% within 72 candles."""
        return f"{self.pct * 100:g}pct_{self.horizon}"


class ModelsConfig(_Section):
    champion: str = "lightgbm"
    keep_versions: int = Field(default=5, ge=1)
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)


class TrainingConfig(_Section):
    history_candles: int = Field(default=8760, ge=100)
    min_rows: int = Field(default=500, ge=50)
    calibration_fraction: float = Field(default=0.2, gt=0, lt=0.5)


class ScheduleConfig(_Section):
    predict_delay_seconds: int = Field(default=20, ge=0, le=59)
    retrain_cron: str = "17 3 * * *"
    misfire_grace_seconds: int = Field(default=300, ge=1)
    leader_ttl_seconds: float = Field(default=30, ge=2)  # a standby takes over within this
    promotion_cron: str = "41 4 * * *"  # daily: compare challengers with champions
    summary_cron: str = "0 8 * * *"  # daily summary alert (UTC, crontab syntax)
    health_check_minutes: int = Field(default=5, ge=1, le=1440)  # system check cadence
    alerts_retry_seconds: int = Field(default=30, ge=5, le=3600)  # drain waiting alerts

    @field_validator("retrain_cron", "summary_cron", "promotion_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"must be a crontab expression like '17 3 * * *' ({exc})") from exc
        return value


_SECRET_OPTION_WORDS = ("apikey", "secret", "password", "privatekey", "token", "uid")
LIVE_INSTALL = "pip install 'signalcast[live]'"


class DataConfig(_Section):
    """Where closed candles come from on each tick.

    ``synthetic``: the seeded synthetic market (demo, tests); ``stored``: nothing is fetched, the
    ticks use candles already in the database (loaded with ``signalcast ingest --file``);
    ``exchange``: a real exchange through ccxt (the optional ``live`` extra): ``exchange`` is the
    ccxt id, ``exchange_options`` go to the ccxt constructor as they are (e.g. ``urls``,
    ``rateLimit``, ``options``). A candle counts as closed once its end time has passed by
    ``close_grace_seconds`` (keep it below ``schedule.predict_delay_seconds``). Failed calls are
    retried ``max_retries`` times, waiting ``retry_backoff_seconds`` doubled each time up to
    ``retry_backoff_max_seconds`` (or the exchange's Retry-After, when it asks for longer and
    that is within the maximum). With nothing stored for an asset, the first ingest fetches
    ``backfill_days`` of history.
    """

    source: Literal["synthetic", "stored", "exchange"] = "synthetic"
    seed: int = 7
    start: datetime = datetime(2023, 1, 1, tzinfo=UTC)
    exchange: str = Field(default="binance", min_length=1)
    exchange_options: dict[str, Any] = Field(default_factory=dict)
    close_grace_seconds: float = Field(default=5.0, ge=0, le=3600)
    max_retries: int = Field(default=4, ge=0, le=20)
    retry_backoff_seconds: float = Field(default=1.0, gt=0, le=300)
    retry_backoff_max_seconds: float = Field(default=30.0, gt=0, le=3600)
    request_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    backfill_days: int = Field(default=365, ge=1, le=3650)

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_validator("source")
    @classmethod
    def _live_extra_installed(cls, value: str) -> str:
        if value == "exchange":
            try:
                import ccxt  # noqa: F401
            except ImportError:
                raise ValueError(
                    "is 'exchange', which needs the optional ccxt package: install it with "
                    f"{LIVE_INSTALL} (or pip install ccxt), or set data.source to 'synthetic' "
                    "or 'stored'"
                ) from None
        return value

    @field_validator("exchange")
    @classmethod
    def _known_exchange(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("source") != "exchange":
            return value
        import ccxt

        if value not in ccxt.exchanges:
            close = difflib.get_close_matches(value.lower(), ccxt.exchanges, n=3)
            hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
            raise ValueError(
                f"{value!r} is not an exchange ccxt {ccxt.__version__} knows; {hint}"
                "use a ccxt id such as binance, bybit, kraken, okx or coinbase"
            )
        return value

    @field_validator("exchange_options")
    @classmethod
    def _no_credentials(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if any(word in str(key).lower().replace("_", "") for word in _SECRET_OPTION_WORDS):
                raise ValueError(
                    f"must not hold credentials ({key!r}): public candles need no API key, and "
                    f"the configuration is shown by `signalcast config show`; remove "
                    f"data.exchange_options.{key}"
                )
        return value


ALERT_KINDS = ("signal", "outcome", "summary", "model", "system")
DeliveryMode = Literal["on", "silent", "off"]
DEFAULT_KIND_MODES: dict[str, str] = {
    "signal": "on", "outcome": "silent", "summary": "silent", "model": "on", "system": "on"}


class AlertsConfig(_Section):
    """What alerts say, who gets them and how fast they go out.

    The console (``console``: the demo's pseudo-chat) prints the ``console_kinds``. A signal's
    confidence band is ``high`` from ``alert_threshold + high_band_margin``, else ``medium``; a
    signal with the direction and band of the last one a chat got within its horizon is not
    sent again (``debounce``). ``kinds`` is each kind's default delivery (``on``, ``silent``: no
    notification sound, ``off``); a chat overrides it with /subscribe. Telegram's limits are
    kept by the drainer: one message per ``chat_interval_seconds`` per chat,
    ``group_per_minute`` per group chat, ``global_per_second`` overall. A wait longer than
    ``max_wait_seconds`` (a long 429, an outage) ends the drain and the alert waits for the
    next one. A worker unseen for ``worker_silent_minutes``, or ``task_failures`` failed runs
    of one task within ``failure_window_minutes``, raise a system alert.
    """

    console: bool = True
    console_kinds: list[Literal["signal", "outcome", "summary", "model", "system"]] = Field(
        default_factory=lambda: ["signal", "outcome"])
    charts: bool = True
    chart_candles: int = Field(default=72, ge=10, le=1000)
    high_band_margin: float = Field(default=0.1, gt=0, lt=0.5)
    kinds: dict[str, DeliveryMode] = Field(default_factory=lambda: dict(DEFAULT_KIND_MODES))
    debounce: bool = True  # a repeated signal (same direction and band within its horizon)
    summary_days: int = Field(default=7, ge=1, le=365)
    chat_interval_seconds: float = Field(default=1.0, ge=0, le=60)
    group_per_minute: int = Field(default=20, ge=1, le=60)
    global_per_second: int = Field(default=30, ge=1, le=30)
    max_wait_seconds: float = Field(default=10.0, ge=0, le=120)
    drain_seconds: float = Field(default=50.0, gt=0, le=3600)
    worker_silent_minutes: int = Field(default=10, ge=1)
    task_failures: int = Field(default=3, ge=1)
    failure_window_minutes: int = Field(default=60, ge=1)

    @field_validator("kinds", mode="before")
    @classmethod
    def _known_kinds(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        unknown = sorted(set(map(str, value)) - set(ALERT_KINDS))
        if unknown:
            raise ValueError(f"has unknown alert kind(s) {', '.join(unknown)}; known: "
                             f"{', '.join(ALERT_KINDS)}")
        # YAML 1.1 reads a bare on/off as true/false
        modes = {k: {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v
                 for k, v in value.items()}
        return {**DEFAULT_KIND_MODES, **modes}


class BotConfig(_Section):
    """The Telegram command bot (``signalcast bot``).

    A command older than ``command_max_age_seconds`` (sent while the bot was down) is answered
    as expired and not run. A /retrain reply is edited at most every
    ``progress_interval_seconds`` and followed for ``progress_timeout_minutes``.
    """

    command_max_age_seconds: int = Field(default=120, ge=1)
    progress_interval_seconds: float = Field(default=1.0, ge=1.0, le=60)
    progress_timeout_minutes: float = Field(default=60, gt=0)
    status_timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    poll_timeout_seconds: int = Field(default=10, ge=0, le=50)
    health_check_minutes: int = Field(default=5, ge=0)  # 0: the bot runs no system check


class WorkersConfig(_Section):
    """Celery worker behaviour (RELIABILITY.md explains each default)."""

    visibility_timeout_seconds: int = Field(default=7200, ge=5)  # > longest train + queue wait
    max_lost_deliveries: int = Field(default=3, ge=1)  # worker died mid-task this often: give up
    max_memory_per_child_mb: int = Field(default=2048, ge=64)
    max_tasks_per_child: int = Field(default=200, ge=1)
    soft_shutdown_seconds: float = Field(default=30, ge=0)
    model_threads: int = Field(default=1, ge=1)  # threads per worker process for model code


ROUTE_FALLBACKS = ("previous_champion", "online")


def _check_family(value: str | None) -> str | None:
    """A registered model family name (built-in or plugin), or None."""
    if value is None:
        return value
    from signalcast.models.registry import families

    known = families()
    if value not in known:
        close = difflib.get_close_matches(value, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"names unknown model family {value!r}; {hint}known: "
                         f"{', '.join(sorted(known))}")
    return value


class RoutePolicy(_Section):
    """How one target is served (signalcast.routing).

    The version with the champion role serves; when no version holds it, the newest version of
    ``champion`` (default: ``models.champion``) does. The newest version of each ``shadows``
    family predicts on the same candles, recorded and never alerted. ``ab_share`` of the
    (asset, target, candle) decisions, picked by a hash, are served by the newest
    ``ab_challenger`` version instead. When the serving model fails (or its circuit breaker is
    open after ``breaker_failures`` consecutive failures, for ``breaker_cooldown_minutes`` of
    candle time) the ``fallback`` chain is tried in order: the previous champion version, then
    the online baseline (``routing.online_family``); nothing left means no signal and an
    operator alert. A challenger replaces the champion once they share ``promote_min_outcomes``
    resolved outcomes and its Brier loss is lower by ``promote_margin`` at
    ``promote_significance`` (Diebold-Mariano, Newey-West lags = 2 x horizon); ``promote_mode``
    ``auto`` promotes, ``command`` only notifies (an operator promotes with /promote).
    """

    champion: str | None = None
    shadows: list[str] = Field(default_factory=list)
    ab_share: float = Field(default=0.0, ge=0, le=1)
    ab_challenger: str | None = None
    fallback: list[Literal["previous_champion", "online"]] = Field(
        default_factory=lambda: list(ROUTE_FALLBACKS))
    breaker_failures: int = Field(default=3, ge=1, le=1000)
    breaker_cooldown_minutes: float = Field(default=60, gt=0)
    promote_min_outcomes: int = Field(default=300, ge=10)
    promote_margin: float = Field(default=0.0, ge=0, lt=1)
    promote_significance: float = Field(default=0.05, gt=0, lt=0.5)
    promote_mode: Literal["auto", "command"] = "command"

    @field_validator("champion", "ab_challenger")
    @classmethod
    def _known_family(cls, value: str | None) -> str | None:
        return _check_family(value)

    @field_validator("shadows")
    @classmethod
    def _known_families(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_family(name)
        return list(dict.fromkeys(value))


class TargetRoute(RoutePolicy):
    """A per-target override: only the keys written here replace ``routing.default``."""

    target: str = Field(min_length=1)


class RoutingConfig(_Section):
    """Champion/challenger routing, online learning and drift (see :class:`RoutePolicy`).

    ``online_family`` models learn from every resolved outcome (``online_learning``); ADWIN
    (``drift_delta``) watches the champion's 0/1 error stream once it has ``drift_min_samples``
    outcomes, and a detected drift notifies and, with ``drift_retrain``, enqueues a retrain.
    Operators change shadows and the A/B split at run time (``signalcast routing ...``), stored in
    the database and read on every prediction.
    """

    default: RoutePolicy = RoutePolicy()
    targets: list[TargetRoute] = Field(default_factory=list)
    online_family: str = "river"
    online_learning: bool = True
    max_learn_per_run: int = Field(default=5000, ge=1)
    drift_detection: bool = True
    drift_delta: float = Field(default=0.002, gt=0, lt=1)
    drift_min_samples: int = Field(default=100, ge=10)
    drift_retrain: bool = True

    @field_validator("online_family")
    @classmethod
    def _known_online_family(cls, value: str) -> str:
        return _check_family(value)

    @field_validator("targets")
    @classmethod
    def _one_override_per_target(cls, value: list[TargetRoute]) -> list[TargetRoute]:
        _require_unique([route.target for route in value], "target once")
        return value

    @model_validator(mode="after")
    def _ab_needs_a_challenger(self) -> RoutingConfig:
        for where, policy in [("default", self.default)] + [
                (f"targets {route.target}", self.policy(route.target)) for route in self.targets]:
            if policy.ab_share > 0 and policy.ab_challenger is None:
                raise ValueError(f"{where}: ab_share {policy.ab_share:g} needs ab_challenger "
                                 "(the family that serves that share)")
        return self

    def policy(self, target_key: str) -> RoutePolicy:
        """The default policy with the keys of ``target_key``'s override (if any) replaced."""
        for route in self.targets:
            if route.target == target_key:
                changed = {k: getattr(route, k) for k in route.model_fields_set if k != "target"}
                return self.default.model_copy(update=changed)
        return self.default


class FileConfig(_Section):
    """What the YAML file holds."""

    assets: list[AssetConfig] = Field(min_length=1)
    targets: list[TargetConfig] = Field(min_length=1)
    models: ModelsConfig = ModelsConfig()
    training: TrainingConfig = TrainingConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    alerts: AlertsConfig = AlertsConfig()
    data: DataConfig = DataConfig()
    bot: BotConfig = BotConfig()
    workers: WorkersConfig = WorkersConfig()
    routing: RoutingConfig = RoutingConfig()

    @field_validator("assets")
    @classmethod
    def _unique_assets(cls, assets: list[AssetConfig]) -> list[AssetConfig]:
        _require_unique([a.symbol for a in assets], "symbol once")
        return assets

    @field_validator("routing")
    @classmethod
    def _routed_targets_exist(cls, routing: RoutingConfig, info: ValidationInfo) -> RoutingConfig:
        keys = [t.key for t in info.data.get("targets") or []]
        for i, route in enumerate(routing.targets):
            if keys and route.target not in keys:
                close = difflib.get_close_matches(route.target, keys, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValueError(f"targets[{i}].target {route.target!r} is not a configured "
                                 f"target; {hint}known: {', '.join(keys)}")
        return routing

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, targets: list[TargetConfig]) -> list[TargetConfig]:
        _require_unique([t.key for t in targets], "(pct, horizon) once")
        return targets


def _split_ids(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, int | str):
        value = str(value).split(",")
    return [str(v).strip() for v in value if str(v).strip()]


class EnvConfig(BaseSettings):
    """What the environment holds (prefix ``SIGNALCAST_``; a ``.env`` file is read too)."""

    model_config = SettingsConfigDict(  # env_ignore_empty: VAR= in .env means unset
        env_prefix="SIGNALCAST_", env_file=".env", extra="ignore", frozen=True,
        env_ignore_empty=True,
    )

    config: Path | None = None  # the YAML file (default: the packaged default.yaml)
    database_url: str = "sqlite:///signalcast.db"  # SQLite on one host, postgresql:// on several
    broker_url: str | None = None  # Redis URL; unset: embedded mode (one process, no Redis)
    telegram_token: SecretStr | None = None  # from BotFather; unset: alerts print only
    telegram_api_url: str | None = None  # Bot API base URL of a self-hosted Bot API server
    telegram_chat_ids: str = ""  # comma-separated chat ids that receive alerts
    telegram_admins: str = ""  # comma-separated user ids allowed every bot command
    telegram_viewers: str = ""  # comma-separated user ids allowed read-only bot commands
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per line
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None  # unset: per command

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: Any) -> Any:
        return (value.strip().upper() or None) if isinstance(value, str) else value


class Settings:
    """The effective configuration: file sections plus environment, validated."""

    def __init__(self, file: FileConfig, env: EnvConfig, source: str):
        self.file, self.env, self.source = file, env, source

    # File sections, reachable as settings.assets, settings.targets, ...
    def __getattr__(self, name: str) -> Any:
        if name in FileConfig.model_fields:
            return getattr(self.file, name)
        raise AttributeError(name)

    @cached_property
    def telegram_chat_ids(self) -> list[str]:
        return _split_ids(self.env.telegram_chat_ids)

    @cached_property
    def telegram_admins(self) -> set[str]:
        return set(_split_ids(self.env.telegram_admins))

    @cached_property
    def telegram_viewers(self) -> set[str]:
        return set(_split_ids(self.env.telegram_viewers))

    def asset(self, symbol: str) -> AssetConfig:
        for asset in self.file.assets:
            if asset.symbol.upper() == symbol.upper():
                return asset
        raise UnknownNameError("asset", symbol, [a.symbol for a in self.file.assets])

    def target(self, key: str) -> TargetConfig:
        for target in self.file.targets:
            if target.key == key:
                return target
        raise UnknownNameError("target", key, [t.key for t in self.file.targets])

    def model_params(self, family: str) -> dict[str, Any]:
        return dict(self.file.models.params.get(family, {}))

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as plain data, secrets masked (for display)."""
        env = self.env.model_dump(mode="json")
        for key, value in env.items():
            if value and ("token" in key or "password" in key):
                env[key] = "********"
        env["database_url"] = _mask_url_password(self.env.database_url)
        if self.env.broker_url:
            env["broker_url"] = _mask_url_password(self.env.broker_url)
        return {"source": self.source, **self.file.model_dump(mode="json"), "environment": env}


def _mask_url_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (e.g. redis://): mask by hand
        if "@" in url and ":" in url.split("@", 1)[0].split("//", 1)[-1]:
            scheme, rest = url.split("//", 1)
            creds, host = rest.split("@", 1)
            return f"{scheme}//{creds.split(':', 1)[0]}:***@{host}"
        return url


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_BOUND_WORDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
                "less_than_equal": "<="}


def _known_fields(parent_loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at ``parent_loc`` (to suggest a fix for a misspelled key)."""
    model: Any = FileConfig
    for part in parent_loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        model = getattr(annotation, "__args__", (annotation,))[0]
    return sorted(model.model_fields) if hasattr(model, "model_fields") else []


def _describe(error: dict[str, Any]) -> str:
    where = _format_loc(error["loc"])
    kind, ctx = error["type"], error.get("ctx") or {}
    got = error.get("input")
    if kind in _BOUND_WORDS:
        bound = next(iter(ctx.values()))
        return f"{where} must be {_BOUND_WORDS[kind]} {bound:g}, got {got!r}"
    if kind == "extra_forbidden":
        known = _known_fields(error["loc"][:-1])
        close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{where} is not a known setting; {hint}known here: {', '.join(known)}"
    if kind == "missing":
        return f"{where} is required but missing"
    if kind == "too_short":
        return f"{where} must not be empty"
    if kind == "value_error":
        return f"{where} {error['msg'].removeprefix('Value error, ')}"
    return f"{where}: {error['msg']}, got {got!r}"


def parse_file_config(data: Any, source: str) -> FileConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level")
    try:
        return FileConfig.model_validate(data)
    except ValidationError as exc:
        problems = "\n  ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"invalid configuration in {source}:\n  {problems}") from None


def load_settings(path: str | Path | None = None, **env_overrides: Any) -> Settings:
    """Build and validate the settings.

    ``path`` (else ``SIGNALCAST_CONFIG``, else the packaged default) is the YAML file;
    ``env_overrides`` replace environment values (used by tests and the demo).
    """
    try:
        env = EnvConfig(**env_overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"SIGNALCAST_{_format_loc(e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid environment: {problems}") from None
    chosen = path or env.config
    if chosen is None:
        text = resources.files("signalcast.config").joinpath(DEFAULT_CONFIG).read_text()
        source = f"(packaged {DEFAULT_CONFIG})"
    else:
        chosen = Path(os.path.expanduser(str(chosen)))
        if not chosen.is_file():
            raise ConfigError(
                f"config file {chosen} does not exist; set SIGNALCAST_CONFIG to a YAML file "
                "or unset it to use the packaged defaults"
            )
        text, source = chosen.read_text(), str(chosen)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    return Settings(parse_file_config(data, source), env, source)
