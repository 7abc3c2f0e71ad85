"""One error envelope for every failure, `{"error": {"code", "message", "retryable"}}` with the HTTP status;
the library's error classes are mapped to statuses here and nowhere else. Never a traceback, a Redis key
or another tenant's data: unexpected errors are logged with a request id and answered generically."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    BudgetSpent,
    Conflict,
    CorruptEntry,
    Forbidden,
    GenqueueError,
    InsufficientCredits,
    InvalidInput,
    NotDurable,
    NotFound,
    OverLimit,
    ServerUnavailable,
    UnknownTaskName,
    UnreadableJob,
)
from ..jobs.manual_retry import MaxAttemptsReached
from ..runs.rules import NothingToRetry, RetryLimitReached
from ..support.logs import get_logger
from .auth import Unauthorized

log = get_logger("genqueue.api")

# Most specific first: MaxAttemptsReached and RetryLimitReached are Conflicts for the CLI (exit 4), but the
# seed contract answers them 400; InsufficientCredits is a Conflict with its own status.
STATUS: list[tuple[type[GenqueueError], int, str]] = [
    (Unauthorized, 401, "UNAUTHORIZED"),
    (Forbidden, 403, "FORBIDDEN"),
    (MaxAttemptsReached, 400, "VALIDATION_ERROR"),
    (RetryLimitReached, 400, "VALIDATION_ERROR"),
    (NothingToRetry, 400, "VALIDATION_ERROR"),
    (UnknownTaskName, 404, "NOT_FOUND"),
    (OverLimit, 422, "OVER_LIMIT"),
    (InvalidInput, 400, "VALIDATION_ERROR"),
    (NotFound, 404, "NOT_FOUND"),
    (BudgetSpent, 402, "BUDGET_SPENT"),
    (InsufficientCredits, 402, "INSUFFICIENT_CREDITS"),
    (Conflict, 409, "CONFLICT"),
    (NotDurable, 503, "NOT_DURABLE"),
    (ServerUnavailable, 503, "UNAVAILABLE"),
    (UnreadableJob, 422, "UNREADABLE_JOB"),
    (CorruptEntry, 422, "CORRUPT_ENTRY"),
]
HTTP_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "UNPROCESSABLE",
    429: "RATE_LIMITED",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, retryable: bool = False, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retryable = status, code, message, retryable
        self.headers = headers or {}


def envelope(
    status: int,
    code: str,
    message: str,
    *,
    retryable: bool = False,
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, "retryable": retryable}
    if request_id:
        body["request_id"] = request_id
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def status_of(exc: GenqueueError) -> tuple[int, str]:
    for cls, status, code in STATUS:
        if isinstance(exc, cls):
            return status, code
    return 500, "INTERNAL"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_request: Request, exc: ApiError):
        return envelope(exc.status, exc.code, exc.message, retryable=exc.retryable, headers=exc.headers)

    @app.exception_handler(GenqueueError)
    async def _library(_request: Request, exc: GenqueueError):
        status, code = status_of(exc)
        message = str(exc)
        if isinstance(exc, MaxAttemptsReached):  # the seed's wording; admins pass ?force=true, not --force
            message = "maximum retry attempts reached (" + message.split(": ", 1)[-1].split(";")[0] + ")"
        return envelope(status, code, message, retryable=exc.retryable or status == 503)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return envelope(400, "VALIDATION_ERROR", "malformed JSON body")
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")) or "request"
        return envelope(400, "VALIDATION_ERROR", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        code = HTTP_CODES.get(exc.status_code, "ERROR")
        message = exc.detail if isinstance(exc.detail, str) else code.lower()
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        return envelope(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    async def _unavailable(_request: Request, _exc: Exception):
        return envelope(
            503,
            "UNAVAILABLE",
            "the job store (Redis) is unreachable; try again shortly",
            retryable=True,
            headers={"Retry-After": "5"},
        )

    app.add_exception_handler(RedisConnectionError, _unavailable)
    app.add_exception_handler(RedisTimeoutError, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        request_id = getattr(request.state, "request_id", None) or uuid.uuid4().hex
        log.error(
            "api.internal_error", request_id=request_id, path=request.url.path, error=type(exc).__name__, exc_info=exc
        )
        return envelope(500, "INTERNAL", "internal error; quote the request id to an admin", request_id=request_id)
