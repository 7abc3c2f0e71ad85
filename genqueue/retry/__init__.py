"""Failure classification (classify), backoff policy (policy) and the retry decision (manager): all pure.

The names below load their module on first use (PEP 562), so importing one small module of the package
(e.g. genqueue.retry.kinds, which `genqueue dlq list` needs for its filters) does not import all of it."""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker sees; at run time each name loads its module on first use
    from .classify import Verdict
    from .exceptions import PermanentError, RateLimited, TransientError
    from .kinds import ErrorKind, Reason
    from .manager import Decision, Failure, RetryManager
    from .policy import DEFAULT_POLICIES, RetryPolicy

_EXPORTS = {
    "PermanentError": "exceptions",
    "RateLimited": "exceptions",
    "TransientError": "exceptions",
    "ErrorKind": "kinds",
    "Reason": "kinds",
    "Verdict": "classify",
    "Decision": "manager",
    "Failure": "manager",
    "RetryManager": "manager",
    "DEFAULT_POLICIES": "policy",
    "RetryPolicy": "policy",
}
__all__ = [  # _EXPORTS' keys, spelled out for type checkers and linters
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
    "Verdict",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
