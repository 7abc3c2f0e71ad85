"""Acknowledged writes that survive a failover, when asked for: GENQUEUE_WAIT_REPLICAS.

Replication is asynchronous: a primary acknowledges a write before any replica has it, and a failover
(forced, or after a crash) can promote a replica that never got it. With `GENQUEUE_WAIT_REPLICAS=N` (or
`all`), a write genqueue tells a producer succeeded is followed, in the same pipeline and on the same
connection, by `WAIT N <timeout>`: no extra round trip, and the caller is told "done" only once N replicas
have it. Fewer in time is `NotDurable` (retryable: exit 5, HTTP 503); the write itself may have happened, so
the retry must be idempotent (an enqueue with an explicit job id is).

`all` means every replica this process has seen connected to the primary (INFO replication, re-read at
most every REPLICAS_REFRESH_S) within the last REPLICAS_FORGET_S, at least one: a former primary cut off
from its replicas during a failover must not count "all of none", and a replica lost for good stops
blocking every acknowledgement after that long.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import NoScriptError

from ..errors import NotDurable
from ..settings import WAIT_ALL_REPLICAS
from . import keys

ALL = WAIT_ALL_REPLICAS
DEFAULT_WAIT_TIMEOUT_S = 1.0
REPLICAS_REFRESH_S = 5.0
REPLICAS_FORGET_S = 30.0


@dataclass(frozen=True, slots=True)
class Durability:
    replicas: int  # ALL, or how many replicas must have a write before it is acknowledged
    timeout_ms: int


def attach(connection: Redis, replicas: int | None, timeout_s: float) -> Redis:
    """Make `connection`'s acknowledged writes wait for replicas (what connect() does from Settings)."""
    if replicas is not None:
        connection.genqueue_durability = Durability(replicas, max(1, int(timeout_s * 1000)))  # type: ignore[attr-defined]
    return connection


def durability_of(connection: Redis) -> Durability | None:
    return getattr(connection, "genqueue_durability", None)


def needed(connection: Redis, durability: Durability) -> int:
    if durability.replicas != ALL:
        return durability.replicas
    seen, seen_at, checked = getattr(connection, "_genqueue_replicas_seen", (0, 0.0, 0.0))
    now = time.monotonic()
    if now - checked >= REPLICAS_REFRESH_S:
        connected = int(connection.info("replication").get("connected_slaves", 0) or 0)
        seen, seen_at = remembered(seen, seen_at, connected, now)
        connection._genqueue_replicas_seen = (seen, seen_at, now)  # type: ignore[attr-defined]
    return max(1, seen)


def remembered(seen: int, seen_at: float, connected: int, now: float) -> tuple[int, float]:
    """Pure: how many replicas `all` waits for, and since when that many were seen. Fewer connected now
    than remembered counts as a moment's gap (a replica resyncing, a failover under way) for REPLICAS_FORGET_S;
    past that, the replica is gone (a node lost for good) and `all` means the ones left, so writes can be
    acknowledged again without restarting every producer."""
    if connected >= seen or now - seen_at > REPLICAS_FORGET_S:
        return connected, now
    return seen, seen_at


RETRY_SAME_ID = "retry with the same id"


def check(acked: int, want: int, what: str, advice: str = RETRY_SAME_ID) -> None:
    if acked < want:
        raise NotDurable(
            f"{what}: written on the primary but acknowledged by {acked} of {want} replica(s) in time "
            f"(GENQUEUE_WAIT_REPLICAS); it may be lost in a failover: {advice}"
        )


def run_script(connection: Redis, script: Any, keys: list, args: list, what: str) -> Any:
    """`script(keys, args)`, then WAIT, in one round trip when durability is on; the script's reply."""
    durability = durability_of(connection)
    if durability is None:
        return script(keys=keys, args=args)
    want = needed(connection, durability)
    for _ in range(2):  # a second time only after loading a script the server did not have
        with connection.pipeline(transaction=False) as pipe:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.wait(want, durability.timeout_ms)
            reply, acked = pipe.execute(raise_on_error=False)
        if not isinstance(reply, NoScriptError):
            break
        connection.script_load(script.script)
    if isinstance(reply, Exception):
        raise reply
    check(int(acked), want, what)
    return reply


def execute(pipe: Any, connection: Redis, what: str, advice: str = RETRY_SAME_ID) -> list:
    """Execute a non-transactional pipeline of writes with WAIT as its last command (one round trip); the
    writes' replies. Without durability, a plain execute."""
    durability = durability_of(connection)
    if durability is None:
        return list(pipe.execute())
    want = needed(connection, durability)
    pipe.wait(want, durability.timeout_ms)
    *replies, acked = pipe.execute()
    check(int(acked), want, what, advice)
    return replies


def confirm(connection: Redis, what: str, advice: str = RETRY_SAME_ID) -> None:
    """WAIT after writes already made (a MULTI batch; an idempotent retry that found its write done): a WAIT
    counts from this connection's latest propagated write, so a PUBLISH (replicated, harmless) goes first and
    the WAIT covers everything the primary had by then."""
    durability = durability_of(connection)
    if durability is None:
        return
    want = needed(connection, durability)
    with connection.pipeline(transaction=False) as pipe:
        pipe.publish(keys.DURABLE_CHANNEL, what)
        pipe.wait(want, durability.timeout_ms)
        _, acked = pipe.execute()
    check(int(acked), want, what, advice)
