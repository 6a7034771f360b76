"""Pieces every CLI module shares: the --config option, settings + database, the actor name."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer

from signalcast.config import Settings, load_settings

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-C", help="YAML config file "
                                                "(default: $SIGNALCAST_CONFIG or packaged)")]


def settings_and_engine(config: Path | None):
    """Validated settings and the upgraded database they point at."""
    from signalcast.db.engine import init_db

    settings: Settings = load_settings(config)
    return settings, init_db(settings.env.database_url)


def cli_actor() -> str:
    """Who a CLI command acts as, for audit records."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in this environment
        return "cli"
