"""Creating, upgrading and dropping the store's tables (SQLAlchemy Core: the same code for
every dialect), with the schema version kept in the meta table."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from .._errors import ConfigurationError, StoreError
from .executor import Executor
from .schema import MIGRATIONS, SCHEMA_VERSION, build_tables


class Tables:
    """The jobs table ``table_name`` and its meta table, on ``db``'s engine."""

    def __init__(self, db: Executor, table_name: str) -> None:
        self._db = db
        self.table_name = table_name
        # PostgreSQL: a partial unique index, created with the table in one transaction
        self._transactional_ddl = db.engine.dialect.name == "postgresql"
        self._md, self.jobs, self.meta = build_tables(
            table_name, partial_unique=self._transactional_ddl
        )

    async def version(self) -> int | None:
        engine = self._db.engine

        async def go() -> int | None:
            async with engine.connect() as conn:
                has = await conn.run_sync(lambda c: sa.inspect(c).has_table(self.meta.name))
                if not has:
                    return None
                row = (
                    await conn.execute(
                        sa.select(self.meta.c.value).where(self.meta.c.name == "schema_version")
                    )
                ).first()
                return int(row[0]) if row else None

        return await self._db.run("reading the schema version", go)

    async def init(self) -> int:
        """Create the tables when missing; return the schema version found or created."""
        engine = self._db.engine

        async def go() -> int:
            async with engine.connect() as conn:
                if not self._transactional_ddl:
                    return await create(conn)
                # The tables, their indexes and the version row appear together, at
                # COMMIT; a process creating them at the same moment waits for it, then
                # fails on the catalog's unique key ("duplicate key") and looks again.
                await conn.execution_options(isolation_level="READ COMMITTED")
                async with conn.begin():
                    return await create(conn)

        async def create(conn: AsyncConnection) -> int:
            await conn.run_sync(self._md.create_all)
            row = (
                await conn.execute(
                    sa.select(self.meta.c.value).where(self.meta.c.name == "schema_version")
                )
            ).first()
            if row is not None:
                return int(row[0])
            # another process may have initialised it first
            with contextlib.suppress(sa.exc.IntegrityError):
                await conn.execute(
                    self.meta.insert().values(name="schema_version", value=str(SCHEMA_VERSION))
                )
            return SCHEMA_VERSION

        for attempt in range(5):
            try:
                version = await self._db.run("creating the schema", go)
                break
            except StoreError as exc:
                # Several processes creating the tables at once: one wins, the others
                # see "already exists" (MySQL 1050 / SQLite) or, on PostgreSQL, a
                # duplicate key in its catalog; look again.
                racing = "already exists" in str(exc) or "duplicate key" in str(exc)
                if attempt == 4 or not racing:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"table {self.table_name} has schema version {version}, newer than this "
                f"aqueue ({SCHEMA_VERSION}): upgrade aqueue"
            )
        if version < SCHEMA_VERSION:
            raise ConfigurationError(
                f"table {self.table_name} has schema version {version}; run "
                "`python -m aqueue db upgrade app:queue`"
            )
        return version

    async def upgrade(self) -> tuple[int, int]:
        before = await self.version()
        if before is None:
            await self.init()
            return (0, SCHEMA_VERSION)
        engine = self._db.engine
        version = before
        while version < SCHEMA_VERSION:
            migrate = MIGRATIONS[version]

            async def go(migrate: Any = migrate, version: int = version) -> None:
                async with engine.begin() as conn:
                    await conn.run_sync(migrate, self.jobs)
                    await conn.execute(
                        self.meta.update()
                        .where(self.meta.c.name == "schema_version")
                        .values(value=str(version + 1))
                    )

            await self._db.run(f"migrating schema {version}->{version + 1}", go)
            version += 1
        return (before, version)

    async def drop(self) -> None:
        engine = self._db.engine

        async def go() -> None:
            async with engine.connect() as conn:
                await conn.run_sync(self._md.drop_all)

        await self._db.run("dropping the tables", go)
