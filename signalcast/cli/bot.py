"""``signalcast bot``: the Telegram command bot (registered on the main CLI as ``bot``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-C", help="YAML config file "
                                                "(default: $SIGNALCAST_CONFIG or packaged)")]


def bot(config: ConfigOpt = None) -> None:
    """Run the Telegram command bot: one polling process per bot token (needs
    SIGNALCAST_TELEGRAM_TOKEN; SIGNALCAST_TELEGRAM_ADMINS/VIEWERS say who may use it)."""
    from signalcast.bot.app import run_bot
    from signalcast.config import load_settings

    logging.getLogger().setLevel(logging.INFO)  # a long-running service: say what it does
    run_bot(load_settings(config))


if __name__ == "__main__":  # python -m signalcast.cli.bot (before it is mounted)
    typer.run(bot)
