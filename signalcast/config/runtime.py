"""Per-process runtime state: the settings every worker process serves with.

A worker process loads its settings once, from the environment (``SIGNALCAST_CONFIG``,
``SIGNALCAST_DATABASE_URL``, ...). The demo and the tests set them explicitly instead.
"""

from __future__ import annotations

import logging
import threading
from typing import TextIO

from signalcast.config import Settings, load_settings
from signalcast.core.logs import configure_logging

_settings: Settings | None = None
_lock = threading.Lock()


def get_settings() -> Settings:
    global _settings
    with _lock:
        if _settings is None:
            _settings = load_settings()
        return _settings


def set_settings(settings: Settings | None) -> None:
    global _settings
    with _lock:
        _settings = settings


def configure_logging_from_env(stream: TextIO | None = None) -> logging.Handler:
    """:func:`configure_logging` with SIGNALCAST_LOG_FORMAT / SIGNALCAST_LOG_LEVEL (and .env).

    An invalid value falls back to text logs here; loading the settings then stops start-up
    with the variable's name and the fix."""
    from pydantic import ValidationError

    from signalcast.config.settings import EnvConfig

    try:
        env = EnvConfig()
    except ValidationError:
        return configure_logging(stream=stream)
    return configure_logging(env.log_format, env.log_level, stream=stream)
