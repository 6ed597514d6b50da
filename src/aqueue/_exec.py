"""Executable tasks: run a program, in any language, as a job.

Opt in per queue with the programs allowed, on both the producer and the runner side::

    queue.allow_exec(["python3", "/usr/local/bin/report"])
    job = await queue.exec(["python3", "-c", "print(6 * 7)"], timeout=10)
    assert (await job.result()) == {"stdout": "42\\n", "exit_code": 0}

The result is ``{"stdout": <its standard output, up to 1 MiB, decoded as UTF-8>,
"exit_code": 0}``; a non-zero exit code or a timeout fails the attempt (retried like any
failure) with the exit code and the tail of stderr as the reason. The program is
started without a shell, in its own process group, which is killed on timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from typing import Any

from ._errors import ConfigurationError, ExecError

EXEC_TASK = "aqueue.exec"
MAX_OUTPUT = 1024 * 1024


def check_allowed(argv: Sequence[str], allowed: frozenset[str]) -> None:
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ConfigurationError("exec needs argv: a non-empty list of strings")
    prog = argv[0]
    if prog not in allowed and os.path.basename(prog) not in allowed:
        raise ConfigurationError(
            f"program {prog!r} is not allowed on this queue: add it with queue.allow_exec([...])"
        )


async def run_program(
    argv: list[str],
    allowed: frozenset[str],
    timeout: float | None = None,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> dict[str, Any]:
    check_allowed(argv, allowed)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env={**os.environ, **env} if env else None,
            start_new_session=True,
        )
    except OSError as exc:
        raise ExecError(f"cannot start {argv[0]!r}: {exc}") from exc
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    except BaseException as exc:  # timeout or cancellation: kill the whole process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)
        if isinstance(exc, TimeoutError):
            raise ExecError(f"{argv[0]} timed out after {timeout}s (killed)") from exc
        raise
    text = out[:MAX_OUTPUT].decode("utf-8", "replace")
    if proc.returncode != 0:
        tail = err[-2000:].decode("utf-8", "replace").strip()
        raise ExecError(f"{argv[0]} exited with code {proc.returncode}: {tail}")
    return {"stdout": text, "exit_code": 0}
