"""What the commands share: loading the app's queue, reporting an error and exiting,
logging, and running a coroutine (on uvloop when installed)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import click

from .._app import Queue
from .._errors import AqueueError

T = TypeVar("T")


_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def redact(text: str) -> str:
    """``text`` with the password of any URL in it replaced by ``***``."""
    return _PASSWORD.sub(r"\1***@", text)


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"aqueue: error: {redact(message)}", err=True)
    sys.exit(code)


def load_queue(path: str) -> Queue:
    """Import ``module:attr`` and check that it is a :class:`Queue`."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        fail(f"{path!r} is not of the form module:attribute (e.g. app:queue)")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        fail(f"cannot import module {module_name!r}: {exc}")
    except Exception as exc:
        fail(f"importing {module_name!r} raised {type(exc).__name__}: {exc}")
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            fail(f"module {module_name!r} has no attribute {attr!r}")
    if not isinstance(obj, Queue):
        fail(f"{path!r} is a {type(obj).__name__}, not an aqueue.Queue")
    return obj


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s [%(process)d] %(message)s",
        stream=sys.stderr,
    )


def run_async(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro_fn()

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:
        return asyncio.run(main())


def admin(queue: Queue, fn: Callable[[Queue], Awaitable[T]]) -> T:
    """Run ``fn(queue)`` and close the queue; an aqueue error exits with code 1."""

    async def go() -> T:
        try:
            return await fn(queue)
        finally:
            await queue.close()

    try:
        return run_async(go)
    except AqueueError as exc:
        fail(str(exc), 1)
