"""GET /metrics: Prometheus text format, read from Redis at scrape time (`api/metrics.py`). Not rate
limited; behind `Authorization: Bearer $GENQUEUE_METRICS_TOKEN` when that is set."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ..deps import ServiceState, service
from ..errors import ApiError
from ..metrics import render, token_ok

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(request: Request, state: ServiceState = Depends(service)) -> Response:
    if not token_ok(state.config.metrics_token, request.headers.get("authorization")):
        raise ApiError(401, "UNAUTHORIZED", "GET /metrics needs Authorization: Bearer $GENQUEUE_METRICS_TOKEN")
    # the webhook queue too: deliveries enqueued, finished, retried and dead-lettered (webhooks/)
    queues = list(dict.fromkeys([state.settings.queue, state.settings.webhook_queue]))
    body, content_type = render(state.connection, queues, dict(state.requests))
    return Response(body, media_type=content_type)
