"""Pieces every CLI module shares: the one ``--config`` option, the console, settings and the
database, time parsing and the actor name for audit records."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from signalcast.config import Settings

console = Console()

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-C", help="YAML config file "
                                                "(default: $SIGNALCAST_CONFIG or packaged)")]


def load_settings(config: Path | None) -> Settings:
    """Validated settings (imported here, when a command runs, not when the CLI starts)."""
    from signalcast.config import load_settings as load

    return load(config)


def settings_and_engine(config: Path | None) -> tuple[Settings, Engine]:
    """Validated settings and the upgraded database they point at."""
    from signalcast.db.engine import init_db

    settings = load_settings(config)
    return settings, init_db(settings.env.database_url)


def parse_time(value: str | None) -> datetime:
    """An ISO time given on the command line, as UTC (naive means UTC); None means now."""
    if value is None:
        return datetime.now(UTC)
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO time like 2024-05-01T12:00") from None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def cli_actor() -> str:
    """Who a CLI command acts as, for audit records."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in this environment
        return "cli"
