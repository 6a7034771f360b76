"""Dialect-aware upserts (SQLite and Postgres both speak INSERT ... ON CONFLICT).

On Postgres, several rows go as one array per column, ``INSERT ... SELECT unnest(...)``: a
statement of fixed size, whose conversion the driver caches, where a multi-row ``VALUES``
(SQLAlchemy's "insertmanyvalues") grows with the rows and is parsed again each time; a tick's
54 prediction rows took 13 ms that way against 7 ms (docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, LargeBinary, Table, bindparam, cast, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel


def dialect_insert(session: Session, model: type[SQLModel]) -> Any:
    dialect = session.get_bind().dialect.name
    table = model.__table__
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"upsert is not implemented for {dialect}")


def upsert(
    session: Session,
    model: type[SQLModel],
    rows: Iterable[dict[str, Any]],
    keys: Sequence[str],
    update: Sequence[str] | None = None,
) -> int:
    """Insert ``rows``; on a conflict on ``keys`` update the ``update`` columns (or do nothing
    when ``update`` is None). Returns how many rows were inserted or changed.

    One statement, executed with the rows as parameters, so SQLAlchemy compiles it once and
    batches the rows itself. The count comes from ``RETURNING`` (SQLite >= 3.35 and Postgres):
    the driver's rowcount is -1 for these statements under psycopg, and a wrong count would
    break idempotency checks.
    """
    return len(_insert(session, model, list(rows), keys, tuple(update or ()), keys[0]))


def insert_new(session: Session, model: type[SQLModel], rows: Iterable[dict[str, Any]],
               keys: Sequence[str], returning: str) -> list[Any]:
    """Insert ``rows`` whose ``keys`` are not stored (one statement, as :func:`upsert`);
    returns the ``returning`` column of each row this call inserted."""
    return _insert(session, model, list(rows), keys, (), returning)


def _insert(session: Session, model: type[SQLModel], rows: list[dict[str, Any]],
            keys: Sequence[str], update: tuple[str, ...], returning: str) -> list[Any]:
    """The one statement of :func:`upsert` and :func:`insert_new`: the rows as arrays on
    Postgres (:func:`_unnest_insert`), else as SQLAlchemy's multi-row VALUES; the
    ``returning`` column of each row inserted or updated."""
    if not rows:
        return []
    table = model.__table__
    arrays = _column_arrays(session, table, rows)
    if arrays is not None:
        stmt, params = _unnest_insert(table, tuple(arrays), tuple(keys), update, returning), arrays
    else:
        insert = _on_conflict(dialect_insert(session, model), keys, update)
        stmt, params = insert.returning(table.c[returning]), rows
    return list(session.connection().execute(stmt, params).scalars())


def _on_conflict(stmt: Any, keys: Sequence[str], update: tuple[str, ...]) -> Any:
    """``ON CONFLICT (keys) DO UPDATE`` the ``update`` columns, or ``DO NOTHING`` without."""
    if update:
        return stmt.on_conflict_do_update(index_elements=list(keys),
                                          set_={c: stmt.excluded[c] for c in update})
    return stmt.on_conflict_do_nothing(index_elements=list(keys))


def insert_ignore(session: Session, model: type[SQLModel], row: dict[str, Any],
                  keys: Sequence[str]) -> bool:
    """Insert one row unless its key exists. True when this call inserted it."""
    return upsert(session, model, [row], keys) == 1


def _column_arrays(session: Session, table: Table, rows: list[dict[str, Any]]
                   ) -> dict[str, list[Any]] | None:
    """``rows`` as one list per column, for :func:`_unnest_insert`; None where that does not
    apply (not Postgres, one row, rows with different columns, a JSON or binary column)."""
    if len(rows) < 2 or session.get_bind().dialect.name != "postgresql":
        return None
    names = rows[0].keys()
    if any(isinstance(table.c[n].type, JSON | LargeBinary) for n in names):
        return None
    if any(r.keys() != names for r in rows):
        return None
    return {n: [r[n] for r in rows] for n in names}


@lru_cache(maxsize=64)
def _unnest_insert(table: Table, names: tuple[str, ...], keys: tuple[str, ...],
                   update: tuple[str, ...], returning: str) -> Any:
    """``INSERT INTO table (names) SELECT unnest(:name::type[]), ... ON CONFLICT (keys) DO
    NOTHING`` (or ``DO UPDATE`` the ``update`` columns) ``RETURNING returning``, with one array
    parameter per column (Postgres zips set-returning functions of a SELECT list)."""
    columns = [table.c[n] for n in names]
    source = select(*(func.unnest(cast(bindparam(c.name, type_=postgresql.ARRAY(c.type)),
                                       postgresql.ARRAY(c.type))).label(c.name)
                      for c in columns))
    stmt = postgresql.insert(table).from_select(list(names), source)
    return _on_conflict(stmt, keys, update).returning(table.c[returning])
