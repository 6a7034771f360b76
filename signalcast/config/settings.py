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
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from signalcast.errors import ConfigError, UnknownNameError
from signalcast.timeframes import timeframe_to_timedelta

DEFAULT_CONFIG = "default.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AssetConfig(_Section):
    symbol: str = Field(min_length=1)
    timeframe: str = "1h"

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

    @field_validator("retrain_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"must be a crontab expression like '17 3 * * *' ({exc})") from exc
        return value


class DataConfig(_Section):
    """Where closed candles come from on each tick.

    ``synthetic``: the seeded synthetic market (demo, tests); ``stored``: nothing is fetched, the
    ticks use candles already in the database (loaded with ``signalcast ingest --file``).
    """

    source: Literal["synthetic", "stored"] = "synthetic"
    seed: int = 7
    start: datetime = datetime(2023, 1, 1, tzinfo=UTC)

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AlertsConfig(_Section):
    console: bool = True


class FileConfig(_Section):
    """What the YAML file holds."""

    assets: list[AssetConfig] = Field(min_length=1)
    targets: list[TargetConfig] = Field(min_length=1)
    models: ModelsConfig = ModelsConfig()
    training: TrainingConfig = TrainingConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    alerts: AlertsConfig = AlertsConfig()
    data: DataConfig = DataConfig()

    @field_validator("assets")
    @classmethod
    def _unique_assets(cls, assets: list[AssetConfig]) -> list[AssetConfig]:
        symbols = [a.symbol for a in assets]
        dupes = sorted({s for s in symbols if symbols.count(s) > 1})
        if dupes:
            raise ValueError(f"must list each symbol once; repeated: {', '.join(dupes)}")
        return assets

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, targets: list[TargetConfig]) -> list[TargetConfig]:
        keys = [t.key for t in targets]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"must list each (pct, horizon) once; repeated: {', '.join(dupes)}")
        return targets


def _split_ids(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, int | str):
        value = str(value).split(",")
    return [str(v).strip() for v in value if str(v).strip()]


class EnvConfig(BaseSettings):
    """What the environment holds (prefix ``SIGNALCAST_``; a ``.env`` file is read too)."""

    model_config = SettingsConfigDict(
        env_prefix="SIGNALCAST_", env_file=".env", extra="ignore", frozen=True
    )

    config: Path | None = None
    database_url: str = "sqlite:///signalcast.db"
    broker_url: str | None = None
    telegram_token: SecretStr | None = None
    telegram_api_url: str | None = None
    telegram_chat_ids: str = ""
    telegram_admins: str = ""
    telegram_viewers: str = ""


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
