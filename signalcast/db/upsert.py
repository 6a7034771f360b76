"""Dialect-aware upserts (SQLite and Postgres both speak INSERT ... ON CONFLICT)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

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
    rows = list(rows)
    if not update:
        return len(insert_new(session, model, rows, keys, returning=keys[0]))
    if not rows:
        return 0
    stmt = dialect_insert(session, model)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in update}
    )
    stmt = stmt.returning(model.__table__.c[keys[0]])
    return len(session.connection().execute(stmt, rows).all())


def insert_new(session: Session, model: type[SQLModel], rows: Iterable[dict[str, Any]],
               keys: Sequence[str], returning: str) -> list[Any]:
    """Insert ``rows`` whose ``keys`` are not stored (one statement, as :func:`upsert`);
    returns the ``returning`` column of each row this call inserted."""
    rows = list(rows)
    if not rows:
        return []
    stmt = dialect_insert(session, model).on_conflict_do_nothing(index_elements=list(keys))
    stmt = stmt.returning(model.__table__.c[returning])
    return list(session.connection().execute(stmt, rows).scalars())


def insert_ignore(session: Session, model: type[SQLModel], row: dict[str, Any],
                  keys: Sequence[str]) -> bool:
    """Insert one row unless its key exists. True when this call inserted it."""
    return upsert(session, model, [row], keys) == 1
