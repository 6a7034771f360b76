"""Settings: one typed, validated object built from a YAML file plus the environment.

The YAML file holds what operators tune (assets, targets, models, schedules); the environment
(``SIGNALCAST_*``, also read from a ``.env`` file) holds secrets and service URLs. Everything is
validated once, at start-up; an invalid value stops start-up with :class:`ConfigError` naming the
field and the fix, e.g. ``targets[1].pct must be > 0, got -0.02``.

Each section lives in its own module (``assets``, ``targets``, ``models``, ``schedule``,
``data``, ``alerts``, ``workers``, ``routing``); the environment in ``environment``; error
messages in ``messages``; reading the file in ``loading`` (:func:`load_settings`). This module
holds the root objects: :class:`FileConfig` (the whole YAML file) and :class:`Settings`.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationInfo, field_validator

from signalcast.config.alerts import ALERT_KINDS, AlertsConfig, BotConfig
from signalcast.config.assets import AssetConfig, check_assets
from signalcast.config.base import Section
from signalcast.config.data import DataConfig
from signalcast.config.environment import EnvConfig, mask_url_password, split_ids
from signalcast.config.models import ModelsConfig, TrainingConfig
from signalcast.config.notifiers import NotifiersConfig
from signalcast.config.params import check_models
from signalcast.config.routing import RoutePolicy, RoutingConfig, check_routed_targets
from signalcast.config.schedule import ScheduleConfig
from signalcast.config.targets import TargetConfig, check_targets
from signalcast.config.workers import WorkersConfig
from signalcast.core.errors import UnknownNameError

if TYPE_CHECKING:
    from signalcast.models.artifact import ArtifactKeys

# Imported from here by other modules before the sections had their own modules.
__all__ = ["ALERT_KINDS", "AlertsConfig", "AssetConfig", "EnvConfig", "FileConfig",
           "RoutePolicy", "Settings", "TargetConfig"]


class FileConfig(Section):
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
    notifiers: NotifiersConfig = NotifiersConfig()

    @field_validator("assets")
    @classmethod
    def _unique_assets(cls, assets: list[AssetConfig]) -> list[AssetConfig]:
        return check_assets(assets)

    @field_validator("routing")
    @classmethod
    def _routed_targets_exist(cls, routing: RoutingConfig, info: ValidationInfo) -> RoutingConfig:
        return check_routed_targets(routing, [t.key for t in info.data.get("targets") or []])

    @field_validator("models")
    @classmethod
    def _known_families(cls, models: ModelsConfig) -> ModelsConfig:
        return check_models(models)

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, targets: list[TargetConfig]) -> list[TargetConfig]:
        return check_targets(targets)


class Settings:
    """The effective configuration: file sections plus environment, validated."""

    def __init__(self, file: FileConfig, env: EnvConfig, source: str):
        self.file, self.env, self.source = file, env, source

    # -- the file sections, as settings.assets, settings.targets, ... ----------------------------

    @property
    def assets(self) -> list[AssetConfig]:
        return self.file.assets

    @property
    def targets(self) -> list[TargetConfig]:
        return self.file.targets

    @property
    def models(self) -> ModelsConfig:
        return self.file.models

    @property
    def training(self) -> TrainingConfig:
        return self.file.training

    @property
    def schedule(self) -> ScheduleConfig:
        return self.file.schedule

    @property
    def alerts(self) -> AlertsConfig:
        return self.file.alerts

    @property
    def data(self) -> DataConfig:
        return self.file.data

    @property
    def bot(self) -> BotConfig:
        return self.file.bot

    @property
    def workers(self) -> WorkersConfig:
        return self.file.workers

    @property
    def routing(self) -> RoutingConfig:
        return self.file.routing

    @property
    def notifiers(self) -> NotifiersConfig:
        return self.file.notifiers

    # -- read from the environment ---------------------------------------------------------------

    @cached_property
    def telegram_chat_ids(self) -> list[str]:
        return split_ids(self.env.telegram_chat_ids)

    @cached_property
    def telegram_admins(self) -> set[str]:
        return set(split_ids(self.env.telegram_admins))

    @cached_property
    def telegram_viewers(self) -> set[str]:
        return set(split_ids(self.env.telegram_viewers))

    @cached_property
    def artifact_keys(self) -> ArtifactKeys:
        """The keys that sign and verify model artifacts (resolved on first use: a command that
        never touches an artifact needs none). Raises ConfigError when none can be had."""
        from signalcast.config.keys import resolve_artifact_keys  # numpy: only when needed

        return resolve_artifact_keys(self.env)

    # -- look-ups --------------------------------------------------------------------------------

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
            if value and ("token" in key or "password" in key
                          or key in ("artifact_key", "artifact_keys_old")):
                env[key] = "********"
        env["database_url"] = mask_url_password(self.env.database_url)
        if self.env.broker_url:
            env["broker_url"] = mask_url_password(self.env.broker_url)
        return {"source": self.source, **self.file.model_dump(mode="json"), "environment": env}
