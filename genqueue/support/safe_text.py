"""Text of an exception that cannot itself raise.

A task may raise an exception whose `__str__` (or `__repr__`) raises, loops or returns a non-string. Every place
that turns an exception into text on the failure path (the classifier's message rules, the failure record, the
worker's log lines) goes through `safe_str`, so formatting a job's exception can never fail the worker.
"""

from __future__ import annotations


def safe_str(exc: BaseException) -> str:
    """str(exc), or `<TypeName: str() failed (ErrorType)>` when that raises or is not a string."""
    try:
        text = str(exc)
    except Exception as err:  # noqa: BLE001 - whatever the job's __str__ does
        return f"<{_type_name(exc)}: str() failed ({_type_name(err)})>"
    if not isinstance(text, str):  # a C-level __str__ can return anything in a subclass of str's checks
        return f"<{_type_name(exc)}: str() failed (not a string)>"
    return text


def describe(exc: BaseException, limit: int = 300) -> str:
    """`TypeName: message`, cut to `limit` characters: the form of an error in a log line."""
    return f"{_type_name(exc)}: {safe_str(exc)}"[:limit]


def _type_name(obj: object) -> str:
    try:
        return str(type(obj).__name__)
    except Exception:  # noqa: BLE001 - a metaclass can make even this raise
        return "Exception"
