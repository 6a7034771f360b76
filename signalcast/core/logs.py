"""Structured logs: context fields (asset, target, task id, ...) on every record, text or JSON.

A task wraps its work in :func:`log_context`; every line logged inside it, by our code or by a
library, carries those fields: appended as ``[asset=BTC/USDT task_id=...]`` in text, as keys of
the object in JSON (``SIGNALCAST_LOG_FORMAT=json``: one object per line, for Loki, Elastic,
CloudWatch...). The fields live in a :class:`contextvars.ContextVar`, so threads and asyncio
tasks each see their own and a forked Celery child starts from its parent's (empty) context.

>>> with log_context(asset="BTC/USDT", target="2pct_72"):
...     current_context()
{'asset': 'BTC/USDT', 'target': '2pct_72'}
>>> current_context()
{}
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar("signalcast_log_context",
                                                     default=MappingProxyType({}))
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "context"}
_explicit_level = False  # SIGNALCAST_LOG_LEVEL (or a caller) chose the level: services keep it


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log record emitted inside the block (nested blocks add to the
    outer fields; None values are left out). Restored on exit, also after an exception."""
    merged = {**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _CONTEXT.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_CONTEXT.get())


class ContextFilter(logging.Filter):
    """Puts the current :func:`log_context` fields on the record as ``record.context``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.context = {**_CONTEXT.get(), **getattr(record, "context", {})}
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, process, the
    context fields, ``extra=`` fields, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        extra = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS}
        for key, value in {**getattr(record, "context", {}), **extra}.items():
            payload.setdefault(key, value)
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The CLI's readable lines, with the context fields appended in brackets."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = getattr(record, "context", None)
        if not context:
            return line
        fields = " ".join(f"{key}={value}" for key, value in context.items())
        head, newline, tail = line.partition("\n")  # keep a traceback below the bracket
        return f"{head} [{fields}]{newline}{tail}"


def configure_logging(fmt: str = "text", level: str | int | None = None, *,
                      default_level: int = logging.WARNING,
                      stream: TextIO | None = None) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr) as ``fmt`` ('text' or 'json').

    ``level`` (e.g. from SIGNALCAST_LOG_LEVEL) is kept even when a long-running service later
    asks for its usual level (:func:`set_service_level`); without it ``default_level`` applies.
    Calling it again replaces the handler it installed before (idempotent)."""
    global _explicit_level
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_signalcast", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._signalcast = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    _explicit_level = level is not None
    root.setLevel(logging.getLevelName(level) if isinstance(level, str) else
                  (level if level is not None else default_level))
    return handler


def set_service_level(level: str | int) -> None:
    """A long-running service's usual verbosity (INFO), unless SIGNALCAST_LOG_LEVEL chose."""
    if not _explicit_level:
        logging.getLogger().setLevel(logging.getLevelName(level) if isinstance(level, str)
                                     else level)
