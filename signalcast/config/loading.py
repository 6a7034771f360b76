"""Building the settings: the environment, then the YAML file it (or the caller) names, else
the packaged ``default.yaml``; any problem is a :class:`ConfigError` saying what to fix."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from signalcast.config.environment import EnvConfig
from signalcast.config.messages import environment_error, file_error
from signalcast.config.settings import FileConfig, Settings
from signalcast.core.errors import ConfigError

DEFAULT_CONFIG = "default.yaml"


def parse_file_config(data: Any, source: str) -> FileConfig:
    """Validate the parsed YAML ``data`` read from ``source``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level")
    try:
        return FileConfig.model_validate(data)
    except ValidationError as exc:
        raise file_error(exc, FileConfig, source) from None


def _read_yaml(path: Path | None) -> tuple[Any, str]:
    """The parsed YAML of ``path`` (None: the packaged default) and how to name it in errors."""
    if path is None:
        text = resources.files("signalcast.config").joinpath(DEFAULT_CONFIG).read_text()
        source = f"(packaged {DEFAULT_CONFIG})"
    else:
        path = Path(os.path.expanduser(str(path)))
        if not path.is_file():
            raise ConfigError(
                f"config file {path} does not exist; set SIGNALCAST_CONFIG to a YAML file "
                "or unset it to use the packaged defaults"
            )
        text, source = path.read_text(), str(path)
    try:
        return yaml.safe_load(text), source
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None


def load_settings(path: str | Path | None = None, **env_overrides: Any) -> Settings:
    """Build and validate the settings.

    ``path`` (else ``SIGNALCAST_CONFIG``, else the packaged default) is the YAML file;
    ``env_overrides`` replace environment values (used by tests and the demo).
    """
    try:
        env = EnvConfig(**env_overrides)
    except ValidationError as exc:
        raise environment_error(exc) from None
    chosen = path or env.config
    data, source = _read_yaml(None if chosen is None else Path(chosen))
    return Settings(parse_file_config(data, source), env, source)
