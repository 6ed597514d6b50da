"""``aqueue.Queue``: the one public facade, above both the producer side (``_queue``) and
the runner (``_runner``), which never import each other."""

from __future__ import annotations

from ._queue.client import QueueClient
from ._runner.config import RunnerConfig
from ._runner.runner import Runner


class Queue(QueueClient):
    """A named queue of jobs, durable in SQL and dispatched through Redis.

    ``redis_url`` / ``database_url`` default to ``AQUEUE_REDIS_URL`` /
    ``AQUEUE_DATABASE_URL``, then to the embedded default under ``./.aqueue/`` (SQLite and
    a local Redis on a unix socket). Nothing connects until first use.
    """

    async def run(self, config: RunnerConfig | None = None) -> None:
        """Run a runner for this queue in the current event loop until stopped."""
        await Runner(self, config or RunnerConfig()).run()


__all__ = ["Queue"]
