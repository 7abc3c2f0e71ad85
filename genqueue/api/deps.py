"""What routes share, injected with Depends: the service state (settings, connection, config, limiter) and
the caller (a Principal from the bearer token, rate-limited per `sub`; the dashboard counts its sessions'
requests in the same window with `count_request`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Depends, Request
from redis import Redis

from ..dlq.store import DLQStore
from ..settings import Settings
from ..tenants.tenancy import Principal, require_admin
from .auth import Unauthorized, principal_from_header
from .config import ApiConfig
from .errors import ApiError
from .ratelimit import RateLimiter


@dataclass
class ServiceState:
    settings: Settings
    config: ApiConfig
    connection: Redis
    limiter: RateLimiter
    requests: dict[tuple[str, int], int] = field(default_factory=dict)  # (route, status) → count

    def store(self) -> DLQStore:
        return DLQStore(self.connection, self.settings.queue, retention_s=self.settings.dlq_retention_s)


async def service(request: Request) -> ServiceState:
    # async: no I/O, and FastAPI would otherwise hop to its threadpool for a sync dependency
    return request.app.state.genqueue


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def principal(request: Request, state: ServiceState = Depends(service)) -> Principal:
    """The caller, from `Authorization: Bearer <JWT>`. A failed authentication counts against the client
    address's own limit (429 once exceeded); a good one against the principal's.

    async on purpose, although the limiter's Redis calls block: they take ~0.1 ms on a local server, and
    FastAPI's threadpool hop for a sync dependency cost more than that under load (bench `api`)."""
    try:
        who = principal_from_header(request.headers.get("authorization"), state.config)
    except Unauthorized:
        allowed, headers = state.limiter.failed_auth(client_address(request))
        if not allowed:
            raise ApiError(
                429,
                "RATE_LIMITED",
                "too many failed authentications from this address",
                retryable=True,
                headers=headers,
            ) from None
        raise
    refused = count_request(request, state, who.sub)
    if refused is not None:
        raise ApiError(
            429, "RATE_LIMITED", f"rate limit of {state.config.rate_limit} exceeded", retryable=True, headers=refused
        )
    request.state.principal = who
    return who


def count_request(request: Request, state: ServiceState, sub: str) -> dict[str, str] | None:
    """Count one request against `sub`'s rate limit — the same window for the API and the dashboard, so a
    session is no way around the limit. None when allowed, else the refusal's headers (Retry-After)."""
    allowed, headers = state.limiter.principal(sub)
    request.state.ratelimit_headers = headers  # added to the response by app.ResponseHeaders
    return None if allowed else headers


def admin(who: Principal = Depends(principal)) -> Principal:
    require_admin(who)
    return who
