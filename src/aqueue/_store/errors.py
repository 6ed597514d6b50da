"""What a database error means: retry it, send the statement again elsewhere, or report it
(a definite refusal, or an outcome unknown). The executor maps every one of them to
``StoreError`` / ``EnqueueOutcomeUnknownError`` at the store's boundary."""

from __future__ import annotations

import socket
import sqlite3

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

RETRYABLE_MYSQL = {1213, 1205}
# asyncmy raises 2006 ("server has gone away") only when it cannot write the request (the
# stream is closed): the statement never reached the server. 2013/2055 come once it was
# written, while waiting for the reply: it may have run.
NOT_SENT_MYSQL = 2006
CONNECTION_LOST_MYSQL = {2013, 2055}


try:  # the drivers' own errors: hot-path statements go to the driver directly
    from asyncmy.errors import MySQLError as AsyncmyError
except ImportError:  # pragma: no cover - MySQL support not installed

    class AsyncmyError(Exception):  # type: ignore[no-redef]
        pass


try:
    from asyncpg import InterfaceError as AsyncpgInterfaceError
    from asyncpg import PostgresError as AsyncpgError
    from asyncpg.exceptions import InternalClientError as AsyncpgInternalError
except ImportError:  # pragma: no cover - PostgreSQL support not installed

    class AsyncpgError(Exception):  # type: ignore[no-redef]
        pass

    class AsyncpgInterfaceError(Exception):  # type: ignore[no-redef]
        pass

    class AsyncpgInternalError(Exception):  # type: ignore[no-redef]
        pass


# Serialization failure, deadlock, lock wait over lock_timeout: the statement was rolled
# back, so running it again is safe.
RETRYABLE_SQLSTATES = {"40001", "40P01", "55P03"}
# The server ended the session: class 08 (connection exception, which asyncpg also raises
# when the connection drops mid-statement) and 57P01-57P03 (administrator command, crash,
# shutdown). A statement in flight may have committed before the end came.
SESSION_ENDED_SQLSTATES = {"57P01", "57P02", "57P03"}


DB_ERRORS: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    OSError,
    sqlite3.Error,
    AsyncmyError,
    AsyncpgError,
    AsyncpgInterfaceError,
    AsyncpgInternalError,
)


NOT_CONNECTED = "aqueue: raised while connecting, before any statement was sent"


def connect_failed(exc: BaseException) -> bool:
    """asyncmy's ``connect()`` on a connection closed during its handshake (a proxy that
    accepts, then resets, in front of a server that is down) raises a bare RuntimeError:
    nothing was sent, the database is unreachable."""
    return isinstance(exc, RuntimeError) and "Transport does not expose socket" in str(exc)


def db_error(exc: BaseException) -> bool:
    """An error of the database or its connection (mapped to ``StoreError``)."""
    return isinstance(exc, DB_ERRORS) or connect_failed(exc)


def mysql_code(exc: BaseException) -> int | None:
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", None)
    if args and isinstance(args[0], int):
        return args[0]
    return None


def sqlstate(exc: BaseException) -> str | None:
    """PostgreSQL's error code of ``exc`` (asyncpg's own error, or SQLAlchemy's wrapper
    of it)."""
    orig = getattr(exc, "orig", None) or exc
    state = getattr(orig, "sqlstate", None)
    return state if isinstance(state, str) else None


def session_ended(state: str | None) -> bool:
    return state is not None and (state.startswith("08") or state in SESSION_ENDED_SQLSTATES)


def is_retryable(exc: BaseException) -> bool:
    code = mysql_code(exc)
    if code in RETRYABLE_MYSQL:
        return True
    if sqlstate(exc) in RETRYABLE_SQLSTATES:
        return True
    return "database is locked" in str(exc)


def busy_protocol(exc: BaseException) -> bool:
    """asyncpg refused to start a statement because its connection still waits for the
    end of an earlier one ("cannot switch to state ...; another operation ... is in
    progress"): the server sent an error (a FATAL when it shuts down or crashes) on an
    idle connection whose end of stream has not been read yet. Checked before anything
    is written: the statement was not sent, and the connection is of no further use."""
    return isinstance(exc, AsyncpgInternalError) and "another operation" in str(exc)


def not_sent(exc: BaseException) -> bool:
    """True when the driver refused to send the statement on a closed connection: it did
    not run, so it can run again on another connection whatever it does."""
    if connect_failed(exc) or busy_protocol(exc):
        return True
    if isinstance(exc, AsyncpgInterfaceError):
        # asyncpg checks that its connection is open before writing anything to it
        return "connection is closed" in str(exc)
    if not isinstance(exc, AsyncmyError):
        return False
    code = mysql_code(exc)
    # InterfaceError(0, ...): the connection was already closed, before any write
    return code == NOT_SENT_MYSQL or (code == 0 and type(exc).__name__ == "InterfaceError")


def is_definite(exc: BaseException) -> bool:
    """True when the statement certainly did not take effect (an error reported by the
    server about the statement), False when the outcome is unknown (connection lost)."""
    if isinstance(exc, sa.exc.IntegrityError | sa.exc.DataError | sa.exc.ProgrammingError):
        return True
    if type(exc).__name__ in ("IntegrityError", "DataError", "ProgrammingError"):
        return True
    if connect_failed(exc) or NOT_CONNECTED in getattr(exc, "__notes__", ()):
        return True
    if isinstance(exc, AsyncpgInterfaceError | AsyncpgInternalError):
        return not_sent(exc)
    state = sqlstate(exc)
    if state is not None:  # the server reported it: definite unless the session ended
        return not session_ended(state)
    code = mysql_code(exc)
    if code is None:
        return False
    if code in (NOT_SENT_MYSQL, 2003):  # not sent; could not connect
        return True
    return code not in CONNECTION_LOST_MYSQL and code < 2000


def connection_broken(exc: BaseException) -> bool:
    if isinstance(exc, AsyncpgInterfaceError | AsyncpgInternalError):
        return True  # an internal error leaves the protocol's state unknown: never reuse
    if isinstance(exc, AsyncpgError):
        return session_ended(sqlstate(exc))
    if isinstance(exc, OSError | AsyncmyError) and not isinstance(exc, sqlite3.Error):
        code = mysql_code(exc)
        return code is None or code >= 2000 or type(exc).__name__ == "InterfaceError"
    return False


# MySQL/MariaDB: access denied (user/password, or to the database); could not reach the
# server (socket, TCP, unknown host).
MYSQL_REFUSED_LOGIN = {1044, 1045, 1698}
MYSQL_UNREACHABLE = {2002, 2003, 2005}


def connect_problem(exc: BaseException) -> str | None:
    """What went wrong if ``exc`` says the database could not be reached or refused the
    login, else None. Said plainly, so that a wrong password or a closed port at first
    use is not read as a failure of the statement that happened to open the connection
    (creating the schema)."""
    code = mysql_code(exc)
    state = sqlstate(exc)
    if code in MYSQL_REFUSED_LOGIN or (state is not None and state.startswith("28")):
        return "refused the login (check the user and password)"
    if state == "3D000" or code == 1049:
        return "has no such database"
    orig = getattr(exc, "orig", None) or exc
    if code in MYSQL_UNREACHABLE or isinstance(orig, ConnectionRefusedError | socket.gaierror):
        return "could not be reached"
    return None


def short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__
