"""``signalcast`` command line: one Typer app (:mod:`.app`) with every command mounted in one place.

Importing this package stays cheap (``signalcast --help`` imports no model library): each
command imports what it needs when it runs.
"""

from __future__ import annotations


def main() -> None:
    from signalcast.cli.app import main as run

    run()
