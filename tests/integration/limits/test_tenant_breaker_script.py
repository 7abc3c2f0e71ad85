"""The tenant breaker in limits.lua, driven directly against the real server with explicit clocks: one
tenant's failing calls park its own jobs, never the others'; the key opens for everyone only when the
failures are not one tenant's; a tenant whose own breaker is open is never the key's probe.
(test_tenant_breaker.py runs the same scripts through real workers; limits.rules.breaker_verdict is the rule.)"""

from __future__ import annotations

import uuid

import pytest

from genqueue.backend import keys
from genqueue.worker.guarded import LIMITS

ACQUIRE = (
    LIMITS
    + """
local r = lim_acquire(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[10], tonumber(ARGV[7]), 0, 0, 0,
                      tonumber(ARGV[8]), tonumber(ARGV[9]))
if r then return r[1] end
return 'ok'
"""
)
RELEASE = (
    LIMITS
    + """
return lim_release(ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), 0, ARGV[6], ARGV[7], ARGV[8], 5,
                   tonumber(ARGV[9]), ARGV[10])
"""
)
WAKE = LIMITS + "return lim_wake(ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), 100, ARGV[5], ARGV[6])"
COOLDOWN, LEASE = 10_000, 60_000
T = 1_000_000


@pytest.fixture
def key(conn):
    name = f"tbrk-{uuid.uuid4().hex[:8]}"
    wake = f"{name}:wake"  # the test's own wake set: no worker of another test sees these jobs
    prefix = keys.limit_prefix(name)
    acquire, release, waker = (conn.register_script(s) for s in (ACQUIRE, RELEASE, WAKE))

    class Key:
        def __init__(self):
            self.prefix = prefix

        def acquire(self, job, tenant, now):
            conn.hset(keys.RQ_JOB_PREFIX + job, mapping={"status": "queued", "origin": name})
            args = [prefix, wake, f"{name}:known", name, job, keys.RQ_JOB_PREFIX + job, now, LEASE, COOLDOWN, tenant]
            return acquire(args=args).decode()

        def release(self, job, tenant, now, outcome):
            args = [prefix, wake, name, job, now, keys.RQ_JOB_PREFIX, keys.RQ_QUEUE_PREFIX, outcome, COOLDOWN, tenant]
            return release(args=args).decode().split(":")[0]

        def call(self, job, tenant, now, outcome):
            assert self.acquire(job, tenant, now) == "ok", job
            return self.release(job, tenant, now, outcome)

        def wake(self, now):
            return waker(args=[prefix, wake, name, now, keys.RQ_JOB_PREFIX, keys.RQ_QUEUE_PREFIX])

        def state(self):
            return {k.decode(): v.decode() for k, v in conn.hgetall(prefix + "brk").items()}

        def tenants_open(self):
            return {k.decode(): int(v) for k, v in conn.hgetall(prefix + "tbrk").items()}

        def queued(self):
            return [x.decode() for x in conn.lrange(keys.RQ_QUEUE_PREFIX + name, 0, -1)]

    yield Key()
    conn.delete(*conn.keys(prefix + "*"), wake, f"{name}:known", keys.RQ_QUEUE_PREFIX + name)


def test_one_tenants_failures_park_its_own_jobs_only(key):
    events = []
    for i in range(5):
        events.append(key.call(f"a{i}", "A", T + i, "fail"))
        events.append(key.call(f"b{i}", "B", T + i, "ok"))
    assert events[-2] == "tenant_opened" and "opened" not in events
    assert key.state() == {} and key.tenants_open() == {"A": T + 4 + COOLDOWN}
    assert key.acquire("a9", "A", T + 10) == "tenant_breaker"
    assert key.acquire("b9", "B", T + 10) == "ok"  # the key is closed for everyone else


def test_the_key_opens_when_the_failures_are_not_one_tenants(key):
    events = [key.call(f"a{i}", "A", T, "fail") for i in range(3)]
    events += [key.call(f"b{i}", "B", T, "fail") for i in range(2)]
    assert events[-1] == "opened"  # 5 of 5 failed, from two tenants
    assert key.acquire("c", "C", T + 1) == "breaker"


def test_a_lone_tenant_then_the_others_failing_too_opens_the_key(key):
    assert [key.call(f"a{i}", "A", T, "fail") for i in range(5)][-1] == "tenant_opened"
    assert key.call("b0", "B", T + 1, "fail") == "opened"  # the provider fails the others' calls as well


def test_jobs_without_a_tenant_open_the_key_as_before(key):
    assert [key.call(f"x{i}", "-", T, "fail") for i in range(5)][-1] == "opened"


def test_a_tenant_with_its_own_breaker_open_is_never_the_probe(key, conn):
    assert [key.call(f"a{i}", "A", T, "fail") for i in range(3)] == [""] * 3
    assert [key.call(f"b{i}", "B", T, "fail") for i in range(2)][-1] == "opened"
    assert key.acquire("a-parked", "A", T + 1) == "breaker" and key.acquire("b-parked", "B", T + 2) == "breaker"
    conn.hset(key.prefix + "tbrk", "A", T + 10 * COOLDOWN)  # A's own breaker outlasts the key's cooldown
    assert key.wake(T + COOLDOWN + 1) == 1
    assert key.queued() == ["b-parked"]  # the one job woken to probe is B's; A's stays parked
    assert key.acquire("b-parked", "B", T + COOLDOWN + 2) == "ok" and key.state()["probe"] == "b-parked"
    assert key.acquire("a-late", "A", T + COOLDOWN + 3) == "tenant_breaker"
    assert key.release("b-parked", "B", T + COOLDOWN + 4, "ok") == "closed"
    assert "a-parked" not in key.queued()  # closing wakes the others, not a tenant held by its own breaker
