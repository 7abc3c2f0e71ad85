"""Tenant weights for the fair pop (`genqueue tenants set T --weight N`, `PUT /api/tenants/{tenant}`): one
hash, read by the pop script at each turn, so a change takes effect at the tenant's next turn."""

from __future__ import annotations

from redis import Redis

from ..backend import keys
from ..backend.replies import text
from .credits import check_tenant
from .fairness import DEFAULT_WEIGHT, NO_TENANT, check_weight


def set_weight(connection: Redis, tenant: str, weight: int) -> int:
    """`tenant` "*" is the share of the jobs with no tenant; the default weight removes the entry."""
    check_tenant(tenant)
    weight = check_weight(weight)
    if weight == DEFAULT_WEIGHT:
        connection.hdel(keys.TENANT_WEIGHTS, tenant)
    else:
        connection.hset(keys.TENANT_WEIGHTS, tenant, weight)
    return weight


def weights(connection: Redis) -> dict[str, int]:
    """Every tenant given a weight other than the default (1)."""
    return {text(k): int(v) for k, v in connection.hgetall(keys.TENANT_WEIGHTS).items()}


def weight(connection: Redis, tenant: str) -> int:
    raw = connection.hget(keys.TENANT_WEIGHTS, check_tenant(tenant))
    return DEFAULT_WEIGHT if raw is None else int(raw)


__all__ = ["NO_TENANT", "set_weight", "weight", "weights"]
