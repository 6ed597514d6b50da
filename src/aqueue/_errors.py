"""One root exception, :class:`AqueueError`, and its families.

Every exception aqueue defines lives here (the tree is in docs/reference/errors.md).
Third-party errors (redis-py, SQLAlchemy/DBAPI) are mapped to these at the Redis and SQL
boundaries, so user code only ever needs to catch aqueue's own types. :class:`Retry` is
not an error: a handler raises it to ask for another attempt.
"""

from __future__ import annotations


class AqueueError(Exception):
    """Root of every error aqueue raises."""


class ConfigurationError(AqueueError):
    """A setting, URL, identifier or task definition is invalid."""


class UnknownTaskError(AqueueError):
    """A task name that is not registered on the queue."""


class SerializationError(AqueueError):
    """Arguments or a result cannot be encoded (or a message cannot be decoded)."""


class PayloadTooLargeError(SerializationError):
    """An encoded payload is over the queue's ``max_payload_bytes``."""


class UnsupportedMessageError(SerializationError):
    """A well-formed message of a format version this aqueue does not read."""

    def __init__(self, job_id: str | None, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class BackendError(AqueueError):
    """A storage or dispatch backend failed."""


class StoreError(BackendError):
    """The SQL store failed or could not be reached."""


class BrokerError(BackendError):
    """The Redis broker failed or could not be reached."""


class EmbeddedServerError(BackendError):
    """The embedded Redis server could not be found, started or reached."""


class EnqueueOutcomeUnknownError(StoreError):
    """The enqueue's COMMIT outcome is unknown (e.g. the connection was lost mid-commit).

    Enqueue again with the same ``job_id`` (``Options(job_id=err.job_id)``): if the first
    attempt did commit, the second one is a no-op and returns the same job.
    """

    def __init__(self, job_id: str, message: str) -> None:
        super().__init__(f"{message} (job id {job_id}; enqueue again with this id to be sure)")
        self.job_id = job_id
        self.reason = message


class QueueFullError(AqueueError):
    """The queue holds ``max_size`` jobs waiting to run; enqueue later."""


class JobError(AqueueError):
    """Something about one particular job."""

    def __init__(self, job_id: str, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobNotFoundError(JobError):
    """No job with this id exists (or it was purged)."""


class JobFailedError(JobError):
    """The job ended ``failed`` (or ``cancelled``); carries the failure's type and message."""

    def __init__(
        self, job_id: str, status: str, error_type: str, error_message: str, traceback: str
    ) -> None:
        super().__init__(job_id, f"job {job_id} {status}: {error_type}: {error_message}")
        self.status = status
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback


class ResultTimeoutError(JobError, TimeoutError):
    """``job.result(timeout=...)`` ran out of time before the job finished."""


class JobExpiredError(JobError):
    """A job was not started before its ``expires`` deadline; it is not run."""


class CommitError(AqueueError):
    """A manual commit was refused (auto-commit task, wrong token, lease lost)."""


class NoCurrentJobError(AqueueError, LookupError):
    """:func:`current_job` was called outside a running aqueue job."""


class ExecError(AqueueError):
    """The program exited with a non-zero code (or could not be started)."""


class RunnerCrashedError(AqueueError):
    """A supervised side task of the runner died; the runner stopped."""


class Retry(Exception):
    """Raise from a handler to ask for another attempt after ``delay`` seconds."""

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = delay


class RateLimited(Retry):
    """Raise from a handler when the service it calls says "too many requests" (an HTTP
    429): the task's rate limit (its key's, for a keyed limit) admits no job for
    ``retry_after`` seconds, in every runner, and this job is put back to run after it.
    The attempt is not counted: the job goes back to ``todo`` with its attempts as they
    were before this run (see docs/job-control.md, "Rate limits")."""

    def __init__(self, retry_after: float, reason: str = "rate limited") -> None:
        if (
            not isinstance(retry_after, int | float)
            or isinstance(retry_after, bool)
            or not 0 <= retry_after <= 86400 * 365
        ):
            raise ConfigurationError(
                f"retry_after must be a number of seconds >= 0, got {retry_after!r}"
            )
        super().__init__(float(retry_after), reason)
        self.retry_after = float(retry_after)
