"""The ``signalcast`` command line: one Typer app, and the one place every command is mounted.

Commands are thin: they parse, call a use case or enqueue tasks, and print. Domain errors become
one red line and exit code 2, never a traceback. Nothing heavy is imported here or at the top
of the command modules: ``signalcast --help`` stays fast, each command imports what it needs.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from signalcast.cli import admin, evaluate, report, run, services
from signalcast.cli.common import console
from signalcast.cli.models import models_cli
from signalcast.cli.routing import routing_cli
from signalcast.core.errors import SignalcastError

cli = typer.Typer(help="Scheduled, distributed ML market signals delivered to Telegram.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
config_cli = typer.Typer(help="Configuration.", no_args_is_help=True)

for command in (run.demo, run.replay, run.train, run.predict, run.ingest, run.tick,
                services.worker, services.scheduler, services.bot, services.metrics, services.web,
                services.health, admin.status, evaluate.evaluate, report.report):
    cli.command()(command)
db_cli.command("upgrade")(admin.db_upgrade)
db_cli.command("prune")(admin.db_prune)
config_cli.command("show")(admin.config_show)
cli.add_typer(db_cli, name="db")
cli.add_typer(config_cli, name="config")
cli.add_typer(models_cli, name="models")
cli.add_typer(routing_cli, name="routing")


@cli.callback()
def _before_every_command() -> None:
    # Logging is set up when a command runs, not for --help: reading SIGNALCAST_LOG_* loads
    # the settings code, which --help does not need.
    from signalcast.config.runtime import configure_logging_from_env

    configure_logging_from_env()


def main() -> None:
    try:
        cli()
    except SignalcastError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
