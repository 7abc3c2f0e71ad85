"""Unit limits in limits.lua (tokens, images, usd per window), driven directly against the real server with
explicit clocks: a start reserves the estimate, a job that does not fit parks, the move that ends the attempt
replaces the reservation by what it spent (less or more), a crash drops it, an expired lease too, and a
parked job wakes when settled usage leaves the window. (test_units.py runs them through real workers.)"""

from __future__ import annotations

import json
import uuid

import pytest

from genqueue.backend import keys
from genqueue.worker.guarded import LIMITS

ACQUIRE = (
    LIMITS
    + """
local r = lim_acquire(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], '-', tonumber(ARGV[7]), 0, 0, 0,
                      tonumber(ARGV[8]), 0, 0, ARGV[9], {ARGV[10], ARGV[11], 0, 0, 0, 0})
if r then return r[1] end
return 'ok'
"""
)
RELEASE = (
    LIMITS
    + """
return lim_release(ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), 0, ARGV[6], ARGV[7], ARGV[8], 5, 0, '-',
                   ARGV[9])
"""
)
WAKE = LIMITS + "return lim_wake(ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), 100, ARGV[5], ARGV[6])"
LEASE, WINDOW = 60_000, 60_000
T = 1_000_000


@pytest.fixture
def key(conn):
    name = f"units-{uuid.uuid4().hex[:8]}"
    wake = f"{name}:wake"
    prefix = keys.limit_prefix(name)
    acquire, release, waker = (conn.register_script(s) for s in (ACQUIRE, RELEASE, WAKE))

    class Key:
        def __init__(self):
            self.prefix, self.wake_key = prefix, wake

        def acquire(self, job, tokens, now, limit=1000):
            conn.hset(keys.RQ_JOB_PREFIX + job, mapping={"status": "queued", "origin": name})
            est = json.dumps({"tokens": tokens})
            args = [prefix, wake, f"{name}:known", name, job, keys.RQ_JOB_PREFIX + job, now, LEASE, est, limit, WINDOW]
            return acquire(args=args).decode()

        def release(self, job, now, settle, outcome="ok"):
            settle_json = "" if settle is None else json.dumps({"tokens": settle})
            args = [prefix, wake, name, job, now, keys.RQ_JOB_PREFIX, keys.RQ_QUEUE_PREFIX, outcome, settle_json]
            return release(args=args)

        def wake(self, now):
            return waker(args=[prefix, wake, name, now, keys.RQ_JOB_PREFIX, keys.RQ_QUEUE_PREFIX])

        def totals(self):
            t = {k.decode(): float(v) for k, v in conn.hgetall(prefix + "ut").items()}
            return round(t.get("r:tokens", 0), 6), round(t.get("w:tokens", 0), 6)

        def queued(self):
            return [x.decode() for x in conn.lrange(keys.RQ_QUEUE_PREFIX + name, 0, -1)]

    yield Key()
    conn.delete(*conn.keys(prefix + "*"), wake, f"{name}:known", keys.RQ_QUEUE_PREFIX + name)


def test_a_start_reserves_and_a_job_that_does_not_fit_parks(key):
    assert key.acquire("a", 600, T) == "ok"
    assert key.totals() == (600, 0)
    assert key.acquire("b", 500, T + 1) == "units:tokens"  # 600 + 500 > 1000
    assert key.acquire("c", 400, T + 2) == "ok"  # 600 + 400 fits exactly
    assert key.totals() == (1000, 0)


def test_settle_replaces_the_reservation_by_less_or_more(key):
    assert key.acquire("a", 600, T) == "ok"
    assert key.acquire("b", 300, T) == "ok"
    key.release("a", T + 10, 200)  # spent less than its estimate: the rest is room again
    assert key.totals() == (300, 200)
    assert key.acquire("c", 500, T + 20) == "ok"
    key.release("b", T + 30, 450)  # spent more: the window counts what it spent
    assert key.totals() == (500, 650)
    assert key.acquire("d", 1, T + 40) == "units:tokens"  # 500 + 650 already over the 1000


def test_a_crash_drops_the_reservation_and_counts_nothing(key):
    assert key.acquire("a", 900, T) == "ok"
    key.release("a", T + 10, None, outcome="")  # the sweep's CRASH move: settle ''
    assert key.totals() == (0, 0)
    assert key.acquire("b", 900, T + 20) == "ok"


def test_an_expired_lease_drops_its_reservation(key):
    assert key.acquire("a", 900, T) == "ok"
    assert key.acquire("b", 900, T + LEASE + 1) == "ok"  # a's holder is dead: its lease ran out
    assert key.totals() == (900, 0)


def test_a_parked_job_wakes_when_settled_usage_leaves_the_window(key):
    assert key.acquire("a", 800, T) == "ok"
    key.release("a", T + 100, 800)
    assert key.acquire("b", 500, T + 200) == "units:tokens"
    wake_at = key.wake(T + 300)
    assert wake_at == 0 and key.queued() == []
    assert key.wake(T + 100 + WINDOW) == 1  # a's 800 left the window: b fits
    assert key.queued() == ["b"]
    assert key.acquire("b", 500, T + 100 + WINDOW) == "ok"


def test_a_wake_stops_at_the_first_job_that_does_not_fit(key):
    assert key.acquire("a", 1000, T) == "ok"
    assert key.acquire("b", 700, T + 1) == "units:tokens"
    assert key.acquire("c", 200, T + 2) == "units:tokens"
    key.release("a", T + 10, 400)  # 600 free: b (700) does not fit, so nothing jumps ahead of it
    assert key.queued() == []
    assert key.wake(T + 10 + WINDOW) == 2  # 400 left the window: b and c fit together
    assert sorted(key.queued()) == ["b", "c"]
