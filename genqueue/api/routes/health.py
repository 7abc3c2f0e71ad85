"""Liveness and readiness: not authenticated, not rate-limited."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from redis import Redis
from redis.exceptions import RedisError

from ...backend.outage import quick_retry
from ..deps import ServiceState, service
from ..errors import ApiError

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict:
    return {"data": {"status": "ok"}}


@router.get("/readyz", summary="Redis answers (else 503)")
def readyz(state: ServiceState = Depends(service)) -> dict:
    kwargs = dict(state.connection.connection_pool.connection_kwargs, retry=quick_retry())
    client = Redis(
        connection_pool=state.connection.connection_pool.__class__(
            connection_class=state.connection.connection_pool.connection_class, **kwargs
        )
    )
    try:
        client.ping()
    except (RedisError, OSError):
        raise ApiError(503, "UNAVAILABLE", "the job store (Redis) is unreachable", retryable=True) from None
    finally:
        client.close()
    return {"data": {"status": "ready"}}
