"""The SQL of the store, one module per dialect over the statements they share."""

from __future__ import annotations

from .base import JOB_COLUMNS, BaseQueries, Statement, record
from .claims import Queries
from .mysql import MySQLQueries
from .sqlite import SQLiteQueries

__all__ = [
    "JOB_COLUMNS",
    "BaseQueries",
    "MySQLQueries",
    "Queries",
    "SQLiteQueries",
    "Statement",
    "dialect",
    "record",
]


def dialect(backend: str) -> type[Queries]:
    """The statements of ``backend`` (an SQLAlchemy backend name)."""
    return SQLiteQueries if backend == "sqlite" else MySQLQueries
