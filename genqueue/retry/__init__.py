"""Failure classification (classify), backoff policy (policy) and the retry decision (manager): all pure."""

from .exceptions import PermanentError, RateLimited, TransientError
from .kinds import ErrorKind, Reason
from .manager import Decision, Failure, RetryManager
from .policy import DEFAULT_POLICIES, RetryPolicy

__all__ = [
    "DEFAULT_POLICIES",
    "Decision",
    "ErrorKind",
    "Failure",
    "PermanentError",
    "RateLimited",
    "Reason",
    "RetryManager",
    "RetryPolicy",
    "TransientError",
]
