"""The user-facing error hierarchy; the CLI maps each class to one exit code in one place."""

from __future__ import annotations


class GenqueueError(Exception):
    """Base class: a message meant for a person, and the process exit code it maps to."""

    exit_code = 1
    code = "FAILED"
    retryable = False


class InvalidInput(GenqueueError):
    exit_code = 2
    code = "INVALID_INPUT"


class InvalidId(InvalidInput):
    code = "INVALID_ID"


class UnsupportedServer(InvalidInput):
    """REDIS_URL points at a server genqueue cannot run on (a Redis Cluster node)."""

    code = "UNSUPPORTED_SERVER"


class UnknownTaskName(InvalidInput):
    """An enqueue by name of a task neither this process nor any live worker registered (HTTP 404)."""

    code = "NOT_FOUND"


class OverLimit(InvalidInput):
    """A job whose estimate alone exceeds its limit key's unit limit (tokens, images, usd): it could never run
    (exit 2; HTTP 422 OVER_LIMIT)."""

    code = "OVER_LIMIT"


class NotFound(GenqueueError):
    exit_code = 3
    code = "NOT_FOUND"


class Conflict(GenqueueError):
    exit_code = 4
    code = "CONFLICT"


class Forbidden(GenqueueError):
    """Another tenant's job or run, or an admin action without the admin role (HTTP 403)."""

    exit_code = 4
    code = "FORBIDDEN"


class InsufficientCredits(Conflict):
    """The tenant's retry-credit balance does not cover every charged retry (HTTP 402); nothing changed."""

    code = "INSUFFICIENT_CREDITS"


class BudgetSpent(InsufficientCredits):
    """The tenant's budget for the period is spent and it refuses new jobs (HTTP 402, exit 4); nothing was
    enqueued. `resets_at`: the unix time the period ends (genqueue budgets, usage/budgets.py)."""

    code = "BUDGET_SPENT"

    def __init__(self, message: str, resets_at: float = 0.0) -> None:
        super().__init__(message)
        self.resets_at = resets_at


class ServerUnavailable(GenqueueError):
    exit_code = 5
    code = "UNAVAILABLE"
    retryable = True


class NotDurable(ServerUnavailable):
    """A write reached the primary but not GENQUEUE_WAIT_REPLICAS replicas in time; retry it (same id)."""

    code = "NOT_DURABLE"


class CorruptEntry(GenqueueError):
    exit_code = 1
    code = "CORRUPT_ENTRY"


class UnreadableJob(CorruptEntry):
    """A job hash genqueue cannot read: plain RQ's pickle, or data nested past every bound."""

    code = "UNREADABLE_JOB"
