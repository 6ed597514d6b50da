"""What the claimer, the recorder and the side tasks read of the runner that owns them,
as a protocol: they type against :class:`RunnerHost` instead of importing ``Runner``, so
no module of ``_runner`` imports the module that imports it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .config import RunnerConfig


@dataclass
class RunnerStats:
    executed: int = 0
    done: int = 0
    failed: int = 0
    retried: int = 0
    claims_lost: int = 0
    finishes_rejected: int = 0
    malformed: int = 0
    released: int = 0


class RunnerHost(Protocol):
    """The runner's identity, settings, clock, counters and liveness state."""

    id: str
    config: RunnerConfig
    clock: Callable[[], int]
    stats: RunnerStats
    _stopping: bool
    _last_ack: float
    _epoch: str | None

    def _local_deadline_passed(self) -> bool: ...
