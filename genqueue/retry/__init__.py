"""Failure classification (classify), backoff policy (policy) and the retry decision (manager): all pure.

The names below load their module on first use (PEP 562), so importing one small module of the package
(e.g. genqueue.retry.kinds, which `genqueue dlq list` needs for its filters) does not import all of it."""

from importlib import import_module

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
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
