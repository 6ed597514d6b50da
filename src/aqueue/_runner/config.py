from __future__ import annotations

from dataclasses import dataclass

from .._decisions import ZombieDestination
from .._errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    """How a runner runs. Periods are in seconds."""

    concurrency: int = 10
    """Handlers running at once in this process."""
    prefetch: int | None = None
    """Jobs claimed ahead of a free handler slot, so moving and claiming the next batch
    overlaps with running this one (default: as many as ``concurrency``, at most 100: a
    claimed job holds memory and a lease while it waits; 0 disables)."""
    burst: bool = False
    """Exit once no job is ready or running (instead of waiting for more)."""
    burst_horizon: float = 60.0
    """In burst mode, also wait for delayed jobs and retries due within this many seconds."""
    lease: float = 30.0
    """How long a claim holds a job without renewal before it may be reclaimed."""
    heartbeat: float = 10.0
    """Lease renewal period (must be well under ``lease``)."""
    lease_margin: float | None = None
    """Safety margin of the local deadline (default: a third of the lease)."""
    shutdown_grace: float = 10.0
    """On SIGTERM/SIGINT, how long running handlers may take to finish."""
    block_timeout: float = 1.0
    """Seconds an idle consumer blocks in BLMOVE per call."""
    batch: int = 500
    """Most jobs moved from Redis and claimed in SQL per round trip."""
    finish_linger: float = 0.005
    """How long an outcome recorded while none is on its way to SQL waits for others to
    share its statement and commit (0: none). A job's result shows that much later;
    under a trickle of short jobs (500 a second) the runner then spends a sixth less CPU
    per job, and the database a tenth less. Under load outcomes are batched anyway."""
    promote_interval: float = 0.05
    """Longest wait between two checks of the delayed set."""
    handle_signals: bool = True
    """Install SIGTERM/SIGINT handlers (off when embedding the runner)."""
    reclaim_period: float = 5.0
    """How often expired leases are looked for (one runner at a time, under a lock)."""
    reclaim_limit: int = 1000
    """Most expired leases handled per reclaim pass."""
    zombie_destination: ZombieDestination = "todo"
    """Where a reclaimed job goes (below ``max_stalls``): ``todo`` (run again), or
    ``failed``/``done`` recorded without running it again (an explicit user decision)."""
    max_stalls: int = 3
    """The stall (reclaim of a job) that reaches this count fails the job with "runner
    died" instead."""
    sweep_period: float = 60.0
    """How often SQL is compared with Redis for jobs that never reached it."""
    sweep_grace: float = 30.0
    """A job not marked dispatched this long after its creation is re-dispatched."""
    sweep_limit: int = 5000
    """Most rows looked at per sweep pass (keyset paging resumes where it stopped)."""
    startup_wait: float = 30.0
    """How long a starting runner keeps trying to reach a database or Redis that is down
    (each failure is logged) before it gives up with the error."""
    lookback: float = 7 * 86400.0
    """Startup recovery re-dispatches unfinished jobs created within this window."""
    keep_results: float | None = 7 * 86400.0
    """Finished jobs (and their results) older than this are deleted by the sweeper; None
    keeps them forever."""
    watchdog: float | None = 1.0
    """Report an event loop blocked longer than this many seconds (None: off)."""
    gc_threshold: int | None = 7000
    """While the runner runs, the garbage collector's young-generation threshold (Python's
    default is 700), and the objects alive at startup are frozen out of full collections
    (``gc.freeze``); put back when it stops. A quarter less CPU per short job, and no
    full-heap pauses of tens of milliseconds. None leaves the collector alone (a runner
    embedded in a process that tunes it itself)."""

    threads: int | None = None
    """Threads running sync (plain ``def``) handlers (default: Python's for I/O-bound
    pools, ``min(32, CPUs + 4)``). A thread cannot be killed: one whose handler timed out
    keeps its thread until the function returns."""

    metrics_port: int | None = None
    """Serve Prometheus metrics (``aqueue[metrics]``) on this port (None: off). Under
    ``--processes N`` child ``i`` serves on ``metrics_port + i``."""
    metrics_host: str = "127.0.0.1"
    """Address the metrics port listens on (``0.0.0.0`` for every interface)."""

    def __post_init__(self) -> None:
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ConfigurationError("concurrency must be an int >= 1")
        if self.lease <= 0 or self.heartbeat <= 0 or self.heartbeat >= self.lease:
            raise ConfigurationError("need 0 < heartbeat < lease")
        if self.batch < 1:
            raise ConfigurationError("batch must be >= 1")
        if self.prefetch is not None and (not isinstance(self.prefetch, int) or self.prefetch < 0):
            raise ConfigurationError("prefetch must be an int >= 0 (or None for the default)")
        if self.keep_results is not None and self.keep_results < 0:
            raise ConfigurationError("keep_results must be >= 0 seconds (or None: forever)")
        if self.startup_wait < 0:
            raise ConfigurationError("startup_wait must be >= 0 seconds")
        if self.lookback < 0:
            raise ConfigurationError("lookback must be >= 0 seconds")
        if self.zombie_destination not in ("todo", "failed", "done"):
            raise ConfigurationError("zombie_destination must be 'todo', 'failed' or 'done'")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigurationError("metrics_port must be a port number (or None: off)")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigurationError("threads must be an int >= 1 (or None for the default)")
        if not 0 <= self.finish_linger <= 1:
            raise ConfigurationError("finish_linger must be between 0 and 1 second")
        if self.max_stalls < 1:
            raise ConfigurationError("max_stalls must be >= 1")
        if self.gc_threshold is not None and (
            not isinstance(self.gc_threshold, int) or self.gc_threshold < 1
        ):
            raise ConfigurationError("gc_threshold must be an int >= 1 (or None: leave it)")

    @property
    def prefetch_count(self) -> int:
        """``prefetch`` with its default applied."""
        return min(self.concurrency, 100) if self.prefetch is None else self.prefetch

    @property
    def margin(self) -> float:
        """``lease_margin`` with its default applied."""
        return self.lease / 3 if self.lease_margin is None else self.lease_margin
