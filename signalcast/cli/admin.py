"""Operator commands: ``db upgrade``, ``db prune``, ``config show`` and ``status`` (the one
status service, rendered by :mod:`signalcast.cli.render`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from signalcast.cli.common import ConfigOpt, console, load_settings
from signalcast.core.errors import TemporaryError

if TYPE_CHECKING:
    from signalcast.config import Settings


def db_upgrade(config: ConfigOpt = None) -> None:
    """Create or migrate the database schema to the newest version."""
    from signalcast.db.engine import get_engine
    from signalcast.db.migrate import upgrade

    settings = load_settings(config)
    with database_errors(settings):
        revision = upgrade(get_engine(settings.env.database_url))
    console.print(f"database at revision {revision}: "
                  f"{settings.redacted()['environment']['database_url']}")


def db_prune(
    keep_days: Annotated[float, typer.Option(
        help="keep finished rows younger than this many days (at least 7)")] = 30,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count, delete nothing")] = False,
    config: ConfigOpt = None,
) -> None:
    """Delete finished alert_outbox, task_runs and scheduled_enqueues rows older than
    --keep-days (pending alerts, running tasks and unlanded enqueues are kept)."""
    from datetime import UTC, datetime

    from signalcast.db.engine import get_engine
    from signalcast.ops.retention import prune

    settings = load_settings(config)
    with database_errors(settings):
        result = prune(get_engine(settings.env.database_url), datetime.now(UTC),
                       keep_days=keep_days, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} (finished before {result.cutoff:%Y-%m-%d %H:%M} UTC): " + ", ".join(
        f"{table} {count}" for table, count in result.deleted.items()))


def config_show(config: ConfigOpt = None) -> None:
    """Print the effective configuration (secrets masked)."""
    import yaml

    print(yaml.safe_dump(load_settings(config).redacted(), sort_keys=False), end="")


@contextmanager
def database_errors(settings: Settings) -> Iterator[None]:
    """A database that cannot be reached (or refuses us) becomes one line naming the URL
    (password masked), the driver's reason and the fix, exit code 2, instead of a traceback."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    try:
        yield
    except (OperationalError, DBAPIError) as exc:
        url = settings.redacted()["environment"]["database_url"]
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise TemporaryError(
            f"cannot use the database at {url}: {reason[0] if reason else type(exc).__name__}. "
            "Start the database or fix SIGNALCAST_DATABASE_URL, then run the command again."
        ) from None


def status(config: ConfigOpt = None,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Candles, models, predictions, alerts and task runs at a glance."""
    print_status(load_settings(config), as_json=as_json)


def print_status(settings: Settings, brief: bool = False, as_json: bool = False) -> None:
    from signalcast.cli.render import render_status
    from signalcast.db.engine import init_db
    from signalcast.ops.status import collect_status
    from signalcast.tasks.enqueuer import probe_for

    with database_errors(settings):
        data = collect_status(init_db(settings.env.database_url), settings,
                              probe=probe_for(settings))
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return

    render_status(data, console, brief=brief)
