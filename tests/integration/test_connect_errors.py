"""A database that cannot be reached or refuses the login at first use says so, with the
URL's password redacted, instead of "creating the schema failed: ...", which sent users
to look at the schema: wrong password on MariaDB and PostgreSQL (an own server with
password authentication: the shared one trusts every password), an unknown PostgreSQL
role and database, and a closed port on both."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from aqueue import Queue, StoreError

from ..conftest import MYSQL_URL, POSTGRES_URL, REDIS_URL
from ..soak.servers import PG_BIN, PostgresServer, postgres_available

SECRET = "s3cret-Passw0rd"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_login(url: str, user: str, password: str, port: int | None = None) -> str:
    u = sa.make_url(url).set(username=user, password=password)
    return (u.set(port=port) if port else u).render_as_string(hide_password=False)


async def first_use_error(url: str) -> str:
    queue = Queue("connect_errors", database_url=url, redis_url=REDIS_URL)
    try:
        with pytest.raises(StoreError) as info:
            await queue.connect()
    finally:
        await queue.close()
    text = str(info.value)
    assert SECRET not in text
    assert "***" in text
    assert "creating the schema failed" not in text
    return text


@pytest.fixture(scope="module")
def password_postgres() -> Iterator[str]:
    """An own PostgreSQL whose TCP logins need the password ``right``."""
    if not postgres_available():
        pytest.skip(f"no PostgreSQL server binaries in {PG_BIN}")
    server = PostgresServer()
    try:
        server.install()
        hba = Path(server.datadir) / "pg_hba.conf"
        hba.write_text(
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n", encoding="utf-8"
        )
        server.start()
        psql = [str(PG_BIN / "psql"), "-h", str(server.dir), "-p", str(server.port)]
        done = server._run(
            [*psql, "-U", "postgres", "-c", "ALTER USER postgres PASSWORD 'right'"], 30
        )
        assert done.returncode == 0, done.stderr
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{server.port}/postgres"
    finally:
        server.remove()


@pytest.mark.mysql
async def test_mariadb_wrong_password() -> None:
    text = await first_use_error(with_login(MYSQL_URL, "root", SECRET))
    assert "refused the login" in text and "Access denied" in text


@pytest.mark.mysql
async def test_mariadb_closed_port() -> None:
    text = await first_use_error(with_login(MYSQL_URL, "root", SECRET, closed_port()))
    assert "could not be reached" in text


async def test_postgres_wrong_password(password_postgres: str) -> None:
    text = await first_use_error(with_login(password_postgres, "postgres", SECRET))
    assert "refused the login" in text and "password authentication failed" in text
    # the right password works: the refusal was the password's
    queue = Queue(
        "connect_errors",
        database_url=with_login(password_postgres, "postgres", "right"),
        redis_url=REDIS_URL,
    )
    try:
        await queue.connect()
    finally:
        await queue.close()


async def test_postgres_unknown_role_and_database() -> None:
    text = await first_use_error(with_login(POSTGRES_URL, "no_such_role", SECRET))
    assert "refused the login" in text
    missing = sa.make_url(with_login(POSTGRES_URL, "postgres", SECRET)).set(database="no_such_db")
    text = await first_use_error(missing.render_as_string(hide_password=False))
    assert "has no such database" in text


async def test_postgres_closed_port() -> None:
    text = await first_use_error(with_login(POSTGRES_URL, "postgres", SECRET, closed_port()))
    assert "could not be reached" in text
