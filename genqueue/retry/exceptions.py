"""Exceptions a job may raise to say how its failure should be treated (classifier rule 1)."""

from __future__ import annotations

from .kinds import ErrorKind


class GenerationError(Exception):
    genqueue_kind: ErrorKind = ErrorKind.UNKNOWN

    def __init__(self, message: str = "", *, status_code: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class TransientError(GenerationError):
    genqueue_kind = ErrorKind.TRANSIENT


class RateLimited(GenerationError):
    genqueue_kind = ErrorKind.RATE_LIMITED

    def __init__(
        self, message: str = "rate limited", *, status_code: int | None = 429, retry_after: float | None = None
    ):
        super().__init__(message, status_code=status_code, retry_after=retry_after)


class PermanentError(GenerationError):
    genqueue_kind = ErrorKind.PERMANENT
