"""The ASGI app: `create_app(settings)` wires state, middleware, error handlers and routers.

Served by `genqueue api` (uvicorn); tests use the same factory through httpx's ASGI transport."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from redis import Redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..backend import durable
from ..backend.connection import EmbeddedServer, client_for, redact
from ..backend.outage import short_retry
from ..errors import GenqueueError
from ..settings import Settings
from ..support.version import installed_version
from . import errors
from .config import ApiConfig
from .deps import ServiceState
from .ratelimit import RateLimiter
from .routes import dlq, events, health, jobs, limits, metrics, runs, tenants, usage
from .ui import routes as ui_routes


def lazy_connection(settings: Settings) -> Redis:
    """A client that connects on first use: the service starts, and answers 503, while Redis is down.
    Short retry: a request never hangs through an outage; the next request simply tries again."""
    if settings.redis_url:
        url = settings.redis_url
    else:
        server = EmbeddedServer(settings.home)
        try:
            server.start()
        except GenqueueError:
            pass  # requests answer 503 until it runs
        url = server.url
    client = client_for(url, socket_connect_timeout=2, socket_timeout=10, retry=short_retry())
    return durable.attach(client, settings.wait_replicas, settings.wait_timeout_s)


class GenqueueAPI(FastAPI):
    """FastAPI, with the error envelope documented in its OpenAPI schema (`documented_errors`)."""

    def openapi(self) -> dict[str, Any]:
        return documented_errors(self)


def create_app(settings: Settings, config: ApiConfig | None = None, connection: Redis | None = None) -> BodyLimit:
    """The service: the FastAPI app (`.fastapi`) behind the body-size limit."""
    config = config or ApiConfig.from_env(settings.home)
    connection = connection or lazy_connection(settings)
    app = GenqueueAPI(
        title="genqueue",
        version=installed_version(),
        description="Generation jobs, runs and the dead-letter queue over HTTP. Errors are "
        '{"error": {"code", "message", "retryable"}}.',
    )
    app.state.genqueue = ServiceState(
        settings, config, connection, RateLimiter(connection, config.rate_limit, config.auth_fail_limit)
    )
    errors.install(app)
    for router in (
        health.router,
        jobs.router,
        events.router,
        runs.router,
        dlq.router,
        limits.router,
        tenants.router,
        usage.router,
        metrics.router,
        ui_routes.router,
    ):
        app.include_router(router)
    ui_routes.install(app)
    app.mount("/ui/static", StaticFiles(directory=str(Path(ui_routes.__file__).with_name("static"))), name="static")
    app.add_middleware(ResponseHeaders)
    return BodyLimit(app, config.max_body_bytes, app)


class ResponseHeaders:
    """Adds RateLimit-* headers (set by the principal dependency) and X-Request-Id to every response, and
    counts requests by route template and status for /metrics (genqueue_api_requests_total)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                for name, value in (scope["state"].get("ratelimit_headers") or {}).items():
                    if not any(h[0].lower() == name.lower().encode() for h in headers):
                        headers.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
                route = scope.get("route")
                key = (getattr(route, "path", None) or "unmatched", int(message["status"]))
                requests = scope["app"].state.genqueue.requests
                requests[key] = requests.get(key, 0) + 1
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """413 in the envelope for a body over the limit, answered before the app runs, so nothing the app would
    do (count the rate limit, enqueue, audit) happens: refused by Content-Length when it is announced, and
    in any case by reading the body here first (a chunked body has no Content-Length). Raising from inside
    the app's `receive` instead let the app's own error handling make of the refusal whatever the route's
    parsing made of it: a 500 from request.body(), a 400 from FastAPI's body and form parsing."""

    def __init__(self, app: ASGIApp, max_bytes: int, fastapi_app: FastAPI) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.state = fastapi_app.state  # so tests and the CLI can reach the service state
        self.fastapi = fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(scope, receive, send)
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body ended: nobody to answer
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                return await self._refuse(scope, receive, send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = errors.envelope(
            413, "PAYLOAD_TOO_LARGE", f"request body over the {self.max_bytes // 1024} KiB limit"
        )
        await response(scope, receive, send)


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "retryable"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "retryable": {"type": "boolean"},
                "request_id": {"type": "string"},
            },
        }
    },
}
ERROR_STATUSES = {
    "400": "Invalid input",
    "401": "Not authenticated",
    "402": "Not enough retry credits",
    "403": "Another tenant's, or admin only",
    "404": "Not found",
    "405": "Method not allowed",
    "409": "Conflict",
    "413": "Body over the limit",
    "429": "Rate limited",
    "500": "Internal error",
    "503": "Redis unreachable",
}


def documented_errors(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the error envelope documented on every operation (instead of its 422 model:
    validation errors are 400 VALIDATION_ERROR here)."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for component in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(component, None)
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, text in ERROR_STATUSES.items():
                responses.setdefault(status, {"description": text, **error})
    app.openapi_schema = schema
    return schema


def describe(settings: Settings) -> str:
    return redact(settings.redis_url) if settings.redis_url else EmbeddedServer(settings.home).url
