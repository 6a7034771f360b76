"""Configuration: YAML file + ``SIGNALCAST_*`` environment, validated once at start-up."""

from signalcast.config.settings import (
    AssetConfig,
    EnvConfig,
    FileConfig,
    Settings,
    TargetConfig,
    load_settings,
)

__all__ = ["AssetConfig", "EnvConfig", "FileConfig", "Settings", "TargetConfig", "load_settings"]
