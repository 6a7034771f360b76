"""Per-process runtime state: the settings every worker process serves with.

A worker process loads its settings once, from the environment (``SIGNALCAST_CONFIG``,
``SIGNALCAST_DATABASE_URL``, ...). The demo and the tests set them explicitly instead.
"""

from __future__ import annotations

import threading

from signalcast.config import Settings, load_settings

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
