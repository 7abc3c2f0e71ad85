"""Provider limits with real worker processes: a concurrency cap shared by every worker, a dead holder's
slot coming back, a 429 storm that burns no retry budget and dead-letters nothing, round robin across
tenants, and `genqueue limits` changing a key live."""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest

from tests.helpers import run_cli, wait_for

TASKS = '''
import time

from rq import get_current_job

import genqueue

TRACK = """
local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
return n
"""


@genqueue.task(limit_key="lab-TAG-{tenant}", limits={"concurrency": 3})
def capped(tenant: str, n: int, seconds: float = 0.2) -> int:
    """What the provider sees: how many calls of this key are in flight at once (INCR/DECR, max kept)."""
    conn = get_current_job().connection
    conn.eval(TRACK, 2, "lab-TAG:inflight", "lab-TAG:max")
    try:
        time.sleep(seconds)
    finally:
        conn.decr("lab-TAG:inflight")
    conn.rpush("lab-TAG:done", f"{tenant}:{n}")
    return n


@genqueue.task(limit_key="flaky-TAG", policy={"TRANSIENT": {"max": 20, "base": 0.2, "cap": 0.5}})
def flaky(n: int) -> int:
    """A provider that is down (a 503-like connection error) while the key flaky-TAG:down exists."""
    conn = get_current_job().connection
    conn.rpush("flaky-TAG:calls", f"{time.time()}:{n}")
    if conn.exists("flaky-TAG:down"):
        raise ConnectionError("503 upstream unavailable")
    return n


@genqueue.task(limit_key="solo-TAG")
def solo(n: int, seconds: float = 0.05, user_id: str = "a", hold: bool = False) -> int:
    conn = get_current_job().connection
    conn.rpush("solo-TAG:runs", n)
    if hold:  # keep the slot until the test says so: a fixed time is a budget a loaded machine can eat
        conn.blpop("solo-TAG:release", timeout=120)
    time.sleep(seconds if genqueue.current().attempt == 1 else 0.05)  # a retry after a crash is quick
    return n
'''


@pytest.fixture
def lab(tmp_path, env):
    tag = uuid.uuid4().hex[:8]
    name = f"labtasks_{tag}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS.replace("TAG", tag)))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    return name, tag


def enqueue(env, module, task, **kwargs):
    r = run_cli(env, "enqueue", f"{module}.{task}", "--kwargs", json.dumps(kwargs), "--tasks", module, "--json")
    assert r.code == 0, r.stderr
    return r.json()["id"]


def limits_row(env, key):
    r = run_cli(env, "limits", "--key", key, "--json")
    assert r.code == 0, r.stderr
    return r.json()["limits"][0]


def test_a_concurrency_cap_is_shared_by_every_worker(env, workers, lab, conn):
    module, tag = lab
    ids = [enqueue(env, module, "capped", tenant="a", n=i) for i in range(24)]
    for simple in (False, False, False, True, True, True):
        workers(simple=simple, extra=("--tasks", module))
    wait_for(lambda: conn.llen(f"lab-{tag}:done") == len(ids), timeout=60, message="every job to finish")
    assert int(conn.get(f"lab-{tag}:max")) <= 3  # the provider never saw more than the cap in flight
    assert sorted(int(x.split(b":")[1]) for x in conn.lrange(f"lab-{tag}:done", 0, -1)) == list(range(24))
    row = limits_row(env, f"lab-{tag}-a")
    assert row["concurrency"] == 3 and row["in_flight"] == 0 and row["parked"] == 0
    assert row["counters"]["throttled"] > 0  # six workers really did contend for three slots


def test_tenants_take_turns_within_a_key(env, workers, lab, conn, queue_name):
    """Tenant a's 500 jobs parked ahead of tenant b's 5 (the issue's case): b's run within the first few
    slots' worth — round robin across tenants, not FIFO behind a's 500."""
    from genqueue.jobs.enqueue import enqueue_task

    module, tag = lab
    key = f"solo-{tag}"
    assert run_cli(env, "limits", "set", key, "--concurrency", "1").code == 0
    task = f"{module}.solo"
    enqueue_task(conn, queue_name, task, {"n": 0, "hold": True}, check=False)  # holds the slot while the rest park
    for _ in range(3):
        workers(simple=True, extra=("--tasks", module))
    wait_for(lambda: conn.llen(f"{key}:runs") == 1, message="the first job to hold the slot")
    for i in range(1, 501):
        enqueue_task(conn, queue_name, task, {"n": i}, check=False)
    wait_for(lambda: limits_row(env, key)["parked"] == 500, timeout=60, message="tenant a's jobs parked")
    b_jobs = list(range(1000, 1005))
    for i in b_jobs:
        enqueue_task(conn, queue_name, task, {"n": i, "user_id": "b"}, check=False)
    wait_for(lambda: limits_row(env, key)["parked"] == 505, timeout=60, message="tenant b's jobs parked")
    conn.rpush(f"{key}:release", 1)

    def order():
        return [int(x) for x in conn.lrange(f"{key}:runs", 0, -1)]

    wait_for(lambda: set(b_jobs) <= set(order()), timeout=60, message="tenant b's 5 jobs to run")
    runs = order()
    assert runs[0] == 0 and len(runs) == len(set(runs))  # nothing ran twice
    assert max(runs.index(i) for i in b_jobs) <= 12, runs  # within the first dozen of 506, alternating with a


def test_a_dead_holders_slot_comes_back_and_nothing_runs_twice(env, workers, lab, conn):
    module, tag = lab
    key = f"solo-{tag}"
    assert run_cli(env, "limits", "set", key, "--concurrency", "1").code == 0
    env.update(GENQUEUE_LIVENESS_TTL="2", GENQUEUE_SWEEP_INTERVAL="0.5")
    holder = enqueue(env, module, "solo", n=1, seconds=30)
    other = enqueue(env, module, "solo", n=2)
    a = workers(extra=("--tasks", module))
    wait_for(
        lambda: (
            limits_row(env, key)["in_flight"] == 1
            and limits_row(env, key)["parked"] == 0
            and conn.llen(f"{key}:runs") == 1
        ),
        message="the holder running",
    )
    a.kill()  # SIGKILL: the horse goes with it (PDEATHSIG); the slot is held by a dead worker
    b = workers(simple=True, extra=("--tasks", module))

    # The sweep retries the abandoned job as CRASH, which gives the slot back in the same move.
    def status(job_id):
        return run_cli(env, "jobs", "show", job_id, "--json").json()

    wait_for(
        lambda: status(holder)["status"] == "finished" and status(other)["status"] == "finished",
        timeout=60,
        message="both jobs to finish once the slot came back",
    )
    assert b.alive()
    history = status(holder)["history"]
    assert [h["kind"] for h in history] == ["CRASH"] and history[0]["charged"] is False
    runs = [int(x) for x in conn.lrange(f"{key}:runs", 0, -1)]
    assert sorted(runs) == [1, 1, 2]  # the holder twice (killed, then retried), the other once
    assert limits_row(env, key)["in_flight"] == 0


def test_a_429_storm_burns_no_retry_budget_and_dead_letters_nothing(env, workers, conn, store):
    """The simulated provider enforces 5 calls/s across every worker (429 + Retry-After beyond it); no limit
    is declared, so genqueue learns from the Retry-After alone: the key pauses, its jobs park."""
    from genqueue.backend import keys

    conn.delete(keys.SIM_WINDOW, keys.SIM_STATS)
    env["GENQUEUE_SIM_RATE_LIMIT"] = "5/s"
    model = f"storm-{uuid.uuid4().hex[:6]}"
    ids = []
    for i in range(25):
        r = run_cli(env, "enqueue", "--payload", json.dumps({"prompt": f"p{i}", "model": model}), "--json")
        ids.append(r.json()["id"])
    for simple in (False, True, True):
        workers(simple=simple)
    from rq.job import Job
    from rq.serializers import JSONSerializer

    wait_for(
        lambda: all(
            j is not None and j.get_status() == "finished"
            for j in Job.fetch_many(ids, connection=conn, serializer=JSONSerializer)
        ),
        timeout=90,
        interval=0.5,
        message="every job to finish",
    )
    assert store.count() == 0
    for job_id in ids:
        info = run_cli(env, "jobs", "show", job_id, "--json").json()
        charged = [h for h in info["history"] if h.get("charged")]
        assert not charged and all(h["kind"] == "RATE_LIMITED" for h in info["history"]), info["history"]
    assert int(conn.hget(keys.SIM_STATS, "rate_limited") or 0) > 0  # there was a storm to weather
    row = limits_row(env, f"simulated:{model}")
    assert row["counters"].get("rate_limited", 0) > 0 and row["parked"] == 0


def test_a_failure_storm_opens_the_breaker_and_one_probe_closes_it(env, workers, lab, conn):
    """More than half of ≥ 5 calls failing in a minute opens the key: its jobs park for the cooldown (no call
    reaches the provider), then exactly one probe goes. A failed probe opens it again for twice as long; a
    successful one closes it and the parked jobs all run. One log line per change."""
    module, tag = lab
    key = f"flaky-{tag}"
    assert run_cli(env, "limits", "set", key, "--concurrency", "2", "--cooldown", "1.5s").code == 0
    conn.set(f"{key}:down", 1)
    ids = [enqueue(env, module, "flaky", n=i) for i in range(8)]
    pool = [workers(extra=("--tasks", module)), workers(simple=True, extra=("--tasks", module))]
    wait_for(lambda: limits_row(env, key)["state"] == "open", timeout=30, message="the breaker to open")
    brk = {k.decode(): v.decode() for k, v in conn.hgetall(f"genqueue:limit:{{{key}}}:brk").items()}
    opened_at = (int(brk["until"]) - int(brk["cooldown"])) / 1000
    # The first probe meets the provider still down: the key opens again, for twice the cooldown.
    wait_for(lambda: any("limit.breaker_reopened" in w.log() for w in pool), timeout=30, message="a failed probe")
    brk = {k.decode(): v.decode() for k, v in conn.hgetall(f"genqueue:limit:{{{key}}}:brk").items()}
    assert brk["state"] == "open" and int(brk["cooldown"]) == 3000
    reopened_at = (int(brk["until"]) - 3000) / 1000
    conn.delete(f"{key}:down")  # the provider recovers: the next probe succeeds
    wait_for(
        lambda: all(run_cli(env, "jobs", "show", i, "--json").json()["status"] == "finished" for i in ids),
        timeout=60,
        interval=0.5,
        message="every job to finish after the breaker closed",
    )
    calls = sorted(float(x.split(b":")[0]) for x in conn.lrange(f"{key}:calls", 0, -1))
    # While open, nothing calls the provider (after a 1 s grace for the two calls in flight when it opened),
    # and each cooldown ends with exactly one call — the probe — before any other.
    for start, cooldown in ((opened_at, 1.5), (reopened_at, 3.0)):
        during = [t for t in calls if start + 1.0 < t < start + cooldown - 0.05]
        assert during == [], (start, during)
    logs = "".join(w.log() for w in pool)
    assert logs.count("limit.breaker_opened") == 1 and logs.count("limit.breaker_reopened") == 1
    assert logs.count("limit.breaker_closed") == 1
    row = limits_row(env, key)
    assert row["state"] == "closed" and row["parked"] == 0 and row["in_flight"] == 0
    assert row["counters"]["breaker_opens"] == 1 and row["counters"]["probes"] == 2
    assert row["counters"]["held"] > 0  # jobs did park behind the open breaker
    assert all(p.alive() for p in pool)


def test_a_paused_key_does_not_hold_up_another_key(env, workers, conn):
    """A 429 with Retry-After: 600 pauses `simulated:<a>` for 10 min; jobs of `simulated:<b>` on the same queue,
    enqueued behind it, run at once — they finish while key a is still paused and its job still parked (the
    pause is long so that no machine is slow enough to see it end within the test)."""
    a, b = (f"m{uuid.uuid4().hex[:6]}" for _ in range(2))

    def submit(model, simulate):
        payload = {"prompt": "x", "model": model, "simulate": simulate}
        r = run_cli(env, "enqueue", "--payload", json.dumps(payload), "--json")
        assert r.code == 0, r.stderr
        return r.json()["id"]

    first = submit(a, ["429:retry_after=600", "ok"])
    waiting = submit(a, ["ok"])
    workers(simple=True)
    wait_for(lambda: limits_row(env, f"simulated:{a}")["state"] == "paused", message="key a to pause")
    others = [submit(b, ["ok"]) for _ in range(5)]
    wait_for(
        lambda: all(run_cli(env, "jobs", "show", i, "--json").json()["status"] == "finished" for i in others),
        timeout=30,
        message="key b's jobs to run",
    )
    row = limits_row(env, f"simulated:{a}")
    assert row["state"] == "paused" and row["parked"] >= 1
    assert run_cli(env, "jobs", "show", waiting, "--json").json()["status"] == "parked"
    assert (
        run_cli(env, "jobs", "show", first, "--json").json()["status"] == "retrying"
    )  # its 429 retry waits out the pause


def test_a_bad_breaker_cooldown_stops_the_worker_at_start(env):
    r = run_cli(dict(env, GENQUEUE_BREAKER_COOLDOWN="soon"), "worker", "--burst")
    assert r.code == 2 and "GENQUEUE_BREAKER_COOLDOWN" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
