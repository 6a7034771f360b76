"""Running totals over append-only tables, so a scrape does not recount the whole history."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func
from sqlmodel import Session, select

SETTLE_IDS = 5_000  # newest ids recounted every scrape (rows still committing out of id order)


class RunningTally:
    """Per-key sums over the rows of an append-only table, counted once: rows with an id up to
    the settled mark are summed into running totals; the newest :data:`SETTLE_IDS` ids are
    recounted on every call (a row can commit after one with a higher id)."""

    def __init__(self, table, sums: int = 2) -> None:  # noqa: ANN001 - a SQLModel table
        self.table = table
        self.n_sums = sums  # the query's last ``sums`` columns are summed, the rest is the key
        self.settled = 0
        self.sums: dict[tuple, list[int]] = {}

    def totals(self, session: Session, query: Callable[[int, int], list]
               ) -> list[tuple[tuple, list[int]]]:
        """``query(lo, hi)`` groups the rows with lo < id <= hi as (*key, *sums)."""
        newest = session.exec(select(func.max(self.table.id))).one() or 0
        mark = max(self.settled, newest - SETTLE_IDS)
        if mark > self.settled:
            _add(self.sums, query(self.settled, mark), self.n_sums)
            self.settled = mark
        totals = {k: list(v) for k, v in self.sums.items()}
        _add(totals, query(self.settled, newest), self.n_sums)
        return sorted(totals.items())


def _add(sums: dict[tuple, list[int]], rows: list, n_sums: int) -> None:
    for row in rows:
        key, values = tuple(row[:-n_sums]), tuple(row[-n_sums:])
        acc = sums.setdefault(key, [0] * len(values))
        for i, v in enumerate(values):
            acc[i] += int(v or 0)
