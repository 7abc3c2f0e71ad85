from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    TRANSIENT = "TRANSIENT"
    RATE_LIMITED = "RATE_LIMITED"
    TIMEOUT = "TIMEOUT"
    PERMANENT = "PERMANENT"
    CRASH = "CRASH"  # the work horse or the worker died: not the job's fault
    UNKNOWN = "UNKNOWN"


class Reason(StrEnum):
    """Why a job was dead-lettered."""

    EXHAUSTED = "exhausted"
    NON_RETRYABLE = "non_retryable"
    CRASH_LOOP = "crash_loop"
    MANUAL = "manual"
    RECOVERED = "recovered"  # moved in by `genqueue dlq recover` (plain RQ failures, orphaned executions)
    UNKNOWN_TASK = "unknown_task"  # its function is not a task registered in the worker: never called
    RATE_LIMIT_WAIT_EXCEEDED = "rate_limit_wait_exceeded"  # rate-limited for longer than its max_wait
