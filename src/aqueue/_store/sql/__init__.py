"""The SQL of the store, one module per dialect over the statements they share."""

from __future__ import annotations

from .base import JOB_COLUMNS, BaseQueries, Statement, record
from .claims import Queries
from .mysql import MySQLQueries
from .postgres import PostgresQueries
from .sqlite import SQLiteQueries

__all__ = [
    "JOB_COLUMNS",
    "BaseQueries",
    "MySQLQueries",
    "PostgresQueries",
    "Queries",
    "SQLiteQueries",
    "Statement",
    "dialect",
    "record",
]


def dialect(backend: str) -> type[Queries]:
    """The statements of ``backend`` (an SQLAlchemy backend name)."""
    if backend == "sqlite":
        return SQLiteQueries
    if backend == "postgresql":
        return PostgresQueries
    return MySQLQueries
