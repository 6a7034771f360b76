"""Configuration: YAML file + ``SIGNALCAST_*`` environment, validated once at start-up."""

from signalcast.config.assets import AssetConfig
from signalcast.config.environment import EnvConfig
from signalcast.config.loading import load_settings
from signalcast.config.settings import FileConfig, Settings
from signalcast.config.targets import TargetConfig

__all__ = ["AssetConfig", "EnvConfig", "FileConfig", "Settings", "TargetConfig", "load_settings"]
