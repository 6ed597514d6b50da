"""Executable tasks: a program run as a job, for the programs a queue allows (checked
by the producer and again by the runner). A mixin of the client (see
``aqueue._queue``), above :class:`Registration`: allowing programs registers the task
that runs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .._job import Job
from .._models import Options
from .registration import Registration


class Exec(Registration):
    """Queues program runs."""

    def allow_exec(self, programs: Iterable[str], *, timeout: float | None = 3600) -> None:
        """Enable executable tasks (a program run as a job) for these programs (names or
        absolute paths), on producers and runners alike; ``timeout`` is the default
        run-time limit. See :meth:`exec`."""
        from .._exec import EXEC_TASK, run_program

        allowed = frozenset(programs)
        self._exec_allowed = self._exec_allowed | allowed
        if EXEC_TASK not in self.tasks:
            queue = self

            async def run_exec(
                argv: list[str],
                timeout: float | None = None,
                cwd: str | None = None,
                env: dict[str, str] | None = None,
                stdin: str | None = None,
            ) -> dict[str, Any]:
                return await run_program(argv, queue._exec_allowed, timeout, cwd, env, stdin)

            self.task(name=EXEC_TASK, timeout=timeout, retries=0)(run_exec)

    async def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        options: Options | None = None,
    ) -> Job:
        """Queue a program run. Its result is ``{"stdout": "...", "exit_code": 0}`` (the
        standard output, up to 1 MiB, decoded as UTF-8); a non-zero exit code or a
        timeout fails it with the exit code and the tail of stderr. Only programs allowed with
        :meth:`allow_exec` are accepted (checked here and again on the runner)."""
        from .._exec import EXEC_TASK, check_allowed

        check_allowed(list(argv), self._exec_allowed)
        kwargs: dict[str, Any] = {"argv": list(argv), "timeout": timeout}
        if cwd is not None:
            kwargs["cwd"] = cwd
        if env is not None:
            kwargs["env"] = env
        if stdin is not None:
            kwargs["stdin"] = stdin
        return await self._enqueue(EXEC_TASK, (), kwargs, options or Options())
