"""Retry credits (opt-in per tenant): a tenant with a balance pays one credit per *charged* item retry of
`runs retry-failed`; crashes are free and PERMANENT failures are never retried (`runs.rules.RetryClass`). A
tenant without a balance is unlimited. The debit is queued into the same MULTI as the retry itself, with
the balance WATCHed, so two concurrent clicks never charge twice and a refusal (402) changes nothing."""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.exceptions import WatchError

from ..backend import durable, keys
from ..errors import InsufficientCredits, InvalidInput

credits_key = keys.credits
RETRY_ADD = "check the balance (credits show) before adding again, or set it (credits set: idempotent)"


def check_tenant(tenant: str) -> str:
    if not tenant or len(tenant) > 200 or any(c.isspace() for c in tenant):
        raise InvalidInput(f"invalid tenant {tenant!r}: 1-200 characters, no spaces")
    return tenant


def balance(connection: Redis, tenant: str) -> int | None:
    """The tenant's credits, or None when it has no balance (unlimited)."""
    raw = connection.get(credits_key(check_tenant(tenant)))
    return None if raw is None else int(raw)


def set_balance(connection: Redis, tenant: str, amount: int) -> int:
    """Idempotent; with GENQUEUE_WAIT_REPLICAS the SET and its WAIT go in one round trip."""
    if amount < 0:
        raise InvalidInput("a balance cannot be negative")
    with connection.pipeline(transaction=False) as pipe:
        pipe.set(credits_key(check_tenant(tenant)), amount)
        durable.execute(pipe, connection, f"credits of {tenant}")
    return amount


def add(connection: Redis, tenant: str, amount: int) -> int:
    """Add (or, negative, take away) credits; a tenant without a balance starts from 0."""
    key = credits_key(check_tenant(tenant))
    with connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                new = int(pipe.get(key) or 0) + amount
                if new < 0:
                    raise InvalidInput(f"tenant {tenant} has {new - amount} credit(s); cannot take {-amount}")
                pipe.multi()
                pipe.set(key, new)
                pipe.execute()
                # Not idempotent: after NotDurable the credits were added on the primary; adding again
                # could add twice, so the error says to look first (or to set the balance instead).
                durable.confirm(connection, f"credits add for {tenant} (balance now {new})", RETRY_ADD)
                return new
            except WatchError:
                continue  # someone changed it meanwhile: read again


GIVEN_BACK_FIELD = "genqueue_credit_back"  # job hash field: the history record whose credit was given back


def credit_to_give_back(history: list[dict[str, Any]], given_back: str | None) -> tuple[str, str] | None:
    """Pure: (tenant, marker) when the job's current budget was bought with a credit (its last manual retry
    carries `credit`, the debited tenant) not given back yet; the marker (the record's 1-based index, as
    jobs/lua/cancel.lua counts) goes in GIVEN_BACK_FIELD so it is given back once. None otherwise."""
    for i in range(len(history), 0, -1):
        record = history[i - 1]
        if isinstance(record, dict) and record.get("action") == "manual_retry":
            tenant = record.get("credit")
            if isinstance(tenant, str) and tenant and given_back != str(i):
                return tenant, str(i)
            return None
    return None


def require(tenant: str | None, have: int | None, cost: int) -> None:
    """Pure: refuse (402) when a tenant with a balance cannot pay `cost` credits."""
    if have is not None and cost > have:
        raise InsufficientCredits(
            f"tenant {tenant} has {have} retry credit(s); this retry costs {cost} "
            "(one per charged item); nothing was retried"
        )
