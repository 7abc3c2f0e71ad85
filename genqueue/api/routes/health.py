"""Liveness and readiness: not authenticated, not rate-limited."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from redis.exceptions import RedisError

from ...backend.connection import sibling, unsupported
from ...backend.outage import quick_retry
from ..deps import ServiceState, service
from ..errors import ApiError

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict:
    return {"data": {"status": "ok"}}


@router.get("/readyz", summary="Redis answers and is usable (else 503)")
def readyz(state: ServiceState = Depends(service)) -> dict:
    client = sibling(state.connection, retry=quick_retry())  # one try: readiness must not wait
    try:
        refusal = unsupported(client, state.settings.redis_url or "")
    except (RedisError, OSError):
        raise ApiError(503, "UNAVAILABLE", "the job store (Redis) is unreachable", retryable=True) from None
    finally:
        client.close()
    if refusal:
        raise ApiError(503, "UNSUPPORTED_SERVER", refusal, retryable=False)
    return {"data": {"status": "ready"}}
