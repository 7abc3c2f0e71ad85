"""Usage buckets written directly in backend/keys.py's layout, as the settle path (usage/lua/record.lua)
writes them: the hour bucket's "tenant\\ttask\\tkey\\tunit" field and the tenant's day and month totals."""

from __future__ import annotations

import time

from genqueue.backend import keys
from genqueue.usage.budgets import day_of, month_of


def record(conn, tenant: str, unit: str, amount: float, *, task: str = "t", key: str = "", at: float | None = None):
    at = time.time() if at is None else at
    field = keys.USAGE_FIELD_SEP.join((tenant, task, key, unit))
    with conn.pipeline() as pipe:
        pipe.hincrbyfloat(keys.usage_hour(int(at // 3600)), field, amount)
        pipe.expire(keys.usage_hour(int(at // 3600)), keys.USAGE_HOUR_TTL_S)
        pipe.hincrbyfloat(keys.usage_tenant_day(tenant, day_of(at)), unit, amount)
        pipe.hincrbyfloat(keys.usage_tenant_month(tenant, month_of(at)), unit, amount)
        pipe.execute()
