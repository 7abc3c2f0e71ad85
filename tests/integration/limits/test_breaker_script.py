"""The breaker and the learned rate in limits.lua, driven directly against the real server with explicit
clocks: when the breaker opens, that exactly one probe goes at a time, what a probe's outcome, crash or death
does, that closing wakes the parked jobs; what rate a key with none declared learns from its 429s.
(test_limits.py runs the same scripts through real workers.)"""

from __future__ import annotations

import uuid

import pytest

from genqueue.backend import keys
from genqueue.worker.guarded import LIMITS

ACQUIRE = (
    LIMITS
    + """
local r = lim_acquire(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], 't', tonumber(ARGV[7]), 0, 0, 0,
                      tonumber(ARGV[8]), tonumber(ARGV[9]))
if r then return r[1] end
return 'ok'
"""
)
RELEASE = (
    LIMITS
    + """
return lim_release(ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[10]), ARGV[6], ARGV[7],
                   ARGV[8], 5, tonumber(ARGV[9]))
"""
)
COOLDOWN, LEASE = 10_000, 60_000


@pytest.fixture
def key(conn):
    name = f"brk-{uuid.uuid4().hex[:8]}"
    wake = f"{name}:wake"  # a wake set of the test's own, so the workers of other tests never see these jobs
    prefix = keys.limit_prefix(name)
    acquire, release = conn.register_script(ACQUIRE), conn.register_script(RELEASE)

    class Key:
        prefix = keys.limit_prefix(name)

        def acquire(self, job, now):
            conn.hset(keys.RQ_JOB_PREFIX + job, mapping={"status": "queued", "origin": name})
            out = acquire(
                args=[prefix, wake, f"{name}:known", name, job, keys.RQ_JOB_PREFIX + job, now, LEASE, COOLDOWN]
            )
            return out.decode()

        def release(self, job, now, outcome, pause=0):
            out = release(
                args=[prefix, wake, name, job, now, keys.RQ_JOB_PREFIX, keys.RQ_QUEUE_PREFIX, outcome, COOLDOWN, pause]
            )
            return out.decode().split(":")[0]

        def state(self):
            return {k.decode(): v.decode() for k, v in conn.hgetall(prefix + "brk").items()}

        def queued(self):
            return [x.decode() for x in conn.lrange(keys.RQ_QUEUE_PREFIX + name, 0, -1)]

        def stats(self):
            return {k.decode(): int(v) for k, v in conn.hgetall(prefix + "stats").items()}

    yield Key()
    conn.delete(*conn.keys(prefix + "*"), wake, f"{name}:known", keys.RQ_QUEUE_PREFIX + name)


def storm(key, now, outcomes):
    events = []
    for i, outcome in enumerate(outcomes):
        assert key.acquire(f"s{i}", now) == "ok"
        events.append(key.release(f"s{i}", now, outcome))
    return events


def test_it_opens_only_past_half_failing_of_at_least_five(key):
    assert storm(key, 1_000_000, ["fail"] * 4) == [""] * 4  # four calls: too few to judge
    assert key.state() == {}
    assert storm(key, 1_000_000, ["ok"] * 4) == [""] * 4  # 4 of 8 failed: not more than half
    assert storm(key, 1_000_000, ["fail"]) == ["opened"]  # 5 of 9
    assert key.state()["state"] == "open" and key.state()["until"] == str(1_000_000 + COOLDOWN)


def test_crashes_and_429s_are_not_failures(key):
    assert storm(key, 1_000_000, ["fail", "fail", "fail", "", "", "", "limited", "limited", "answered"]) == [""] * 9
    assert key.state() == {}


def test_old_failures_age_out_of_the_minute(key):
    storm(key, 1_000_000, ["fail"] * 4)
    assert storm(key, 1_000_000 + 61_000, ["fail"]) == [""]  # the four are more than a minute old


def test_one_probe_at_a_time_and_its_outcome_decides(key):
    t = 1_000_000
    storm(key, t, ["fail"] * 5)
    assert key.acquire("a", t + 1) == "breaker"  # open: parked
    assert key.acquire("b", t + COOLDOWN) == "ok"  # cooldown over: b is the probe
    assert key.state()["probe"] == "b"
    assert key.acquire("c", t + COOLDOWN + 1) == "breaker"  # half-open with a probe out: parked
    assert key.release("b", t + COOLDOWN + 2, "fail") == "reopened"  # open again, for twice as long
    assert key.state()["cooldown"] == str(2 * COOLDOWN) and "probe" not in key.state()
    assert key.acquire("d", t + 2 * COOLDOWN) == "breaker"
    t2 = t + COOLDOWN + 2 + 2 * COOLDOWN
    assert key.acquire("e", t2) == "ok" and key.state()["probe"] == "e"
    assert key.release("e", t2 + 5, "answered") == "closed"  # a 4xx is the provider answering
    assert key.state() == {}
    assert sorted(key.queued()) == ["a", "c", "d"]  # closing woke every parked job
    assert key.stats()["breaker_opens"] == 1 and key.stats()["probes"] == 2 and key.stats()["held"] == 3


def test_a_crashed_probe_hands_the_probe_on(key):
    t = 1_000_000
    storm(key, t, ["fail"] * 5)
    assert key.acquire("p", t + COOLDOWN) == "ok"
    assert key.acquire("q", t + COOLDOWN) == "breaker"
    assert key.release("p", t + COOLDOWN + 1, "") == ""  # its worker died: not the provider's verdict
    assert key.queued() == ["q"]  # the next parked job is woken to probe
    assert key.acquire("q", t + COOLDOWN + 2) == "ok" and key.state()["probe"] == "q"


def test_a_dead_probe_is_replaced_when_its_lease_ends(key):
    t = 1_000_000
    storm(key, t, ["fail"] * 5)
    assert key.acquire("p", t + COOLDOWN) == "ok"  # and then its worker vanishes without a release
    assert key.acquire("q", t + COOLDOWN + LEASE - 1) == "breaker"
    assert key.acquire("q", t + COOLDOWN + LEASE + 1) == "ok" and key.state()["probe"] == "q"


def test_no_breaker_with_a_zero_cooldown(key, conn):
    conn.hset(key.prefix + "cfg", "cooldown_ms", 0)  # `genqueue limits set KEY --cooldown 0`
    assert storm(key, 1_000_000, ["fail"] * 10) == [""] * 10
    assert key.state() == {}


def test_a_key_with_no_rate_learns_one_from_a_burst_of_429s(key, conn):
    t = 1_000_000
    for i, at in enumerate((t, t + 100, t + 150)):  # three calls let through ...
        assert key.acquire(f"c{i}", at) == "ok"
        key.release(f"c{i}", at, "ok")
    key.release("x", t + 200, "limited", pause=800)  # ... then a 429: "retry in 800 ms"
    assert not conn.exists(key.prefix + "learned")  # one 429 alone teaches nothing
    key.release("y", t + 210, "limited", pause=790)  # a second one before the first's resume time: a real limit
    # the provider allowed 3 calls from t to t + 1000 (the 429's resume time): 3 per second, as a sliding log
    assert conn.hmget(key.prefix + "learned", "n", "period") == [b"3", b"1000"]
    assert 0 < conn.pttl(key.prefix + "learned") <= 10_000  # ten periods, at least 10 s: then re-learned
    conn.delete(key.prefix + "pause")
    assert [key.acquire(f"d{i}", t + 1000) for i in range(4)] == ["ok", "ok", "ok", "throttled"]


def test_stray_429s_teach_nothing(key, conn):
    t = 1_000_000
    for n in range(5):  # a 429 now and then, each long after the last one's resume time
        key.release(f"ok{n}", t + n * 10_000, "ok")
        key.release(f"x{n}", t + n * 10_000 + 1, "limited", pause=2_000)
    assert not conn.exists(key.prefix + "learned")


def test_a_declared_rate_is_never_replaced_by_a_learned_one(key, conn):
    conn.hset(key.prefix + "cfg", "declared_rate_n", 10)
    key.release("a", 1_000_000, "ok")
    key.release("b", 1_000_100, "limited", pause=500)
    key.release("c", 1_000_110, "limited", pause=490)
    assert not conn.exists(key.prefix + "learned")


def test_only_the_last_ten_seconds_teach_the_rate(key, conn):
    t = 1_000_000
    for n in range(30):  # one call every 2 s for a minute: the key's real pace
        key.release(f"c{n}", t + n * 2_000, "ok")
    now = t + 29 * 2_000 + 500
    key.release("x", now, "limited", pause=500)
    key.release("y", now + 1, "limited", pause=499)
    n, period = (int(v) for v in conn.hmget(key.prefix + "learned", "n", "period"))
    # 5 calls in the last 10 s (not 30 over a minute), from the first of them to the resume time (9 s):
    # about the pace it really had, 1 per 2 s
    assert n == 5 and period == 9_000
