"""``signalcast models ...``: model families. Mounted on the main CLI as ``models``."""

from __future__ import annotations

import typer

from signalcast.models.registry import describe_families

models_cli = typer.Typer(help="Model families.", no_args_is_help=True,
                         pretty_exceptions_enable=False)


@models_cli.callback()
def _models() -> None:
    """Model families (built-in and plugins)."""


@models_cli.command("families")
def families() -> None:
    """List the registered model families: name, source (built-in or the plugin's
    distribution) and import path. Family modules are not imported."""
    rows = [("FAMILY", "SOURCE", "IMPORT PATH")]
    rows += [(name, source, path) for name, path, source in describe_families()]
    name_width, source_width = (max(len(row[i]) for row in rows) for i in (0, 1))
    for name, source, path in rows:
        typer.echo(f"{name:<{name_width}}  {source:<{source_width}}  {path}")
