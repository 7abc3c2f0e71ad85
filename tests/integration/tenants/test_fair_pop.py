"""The fair and priority pop (tenants/fair.py, tenants/lua/fair.lua): the order of the scripts against the
real server, then real workers: priorities, tenants sharing by weight, a SIGKILLed worker losing nothing."""

from __future__ import annotations

import signal
import textwrap
import uuid

import pytest

from genqueue.backend import keys
from genqueue.backend.queues import make_queue
from genqueue.jobs.enqueue import enqueue, enqueue_many, enqueue_task
from genqueue.tenants.fair import waiting, waiting_by_tenant
from genqueue.tenants.fairness import FAIR_BUFFER, PRIORITY_OFFSET_S
from genqueue.tenants.weights import set_weight
from genqueue.worker.guarded import pop, recorder
from tests.helpers import wait_for

TASKS = """
import os
import time

import redis

import genqueue

R = redis.Redis.from_url(os.environ["GQ_TEST_REDIS"])


@genqueue.task
def mark(run: str, wait: float = 0.0) -> None:
    R.rpush(run + ":started", genqueue.current().job_id)
    if wait:
        time.sleep(wait)
"""


@pytest.fixture
def tasks(tmp_path, env, server):
    name = f"fairtasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    env["GQ_TEST_REDIS"] = server[0]
    return name


@pytest.fixture
def run():
    return f"run-{uuid.uuid4().hex[:8]}"


def put(conn, queue, tenant=None, priority=None, prompt="p"):
    return enqueue(conn, queue, {"prompt": prompt}, tenant=tenant, priority=priority).job.id


def drain(conn, queue):
    """Every id the pop hands out, in order, until the queue is empty."""
    q = make_queue(conn, queue)
    out = []
    while (popped := pop(conn, recorder(conn), queue, q.intermediate_queue_key, keys.RQ_JOB_PREFIX)) is not None:
        out.append(popped[0])
    return out


def test_rqs_list_holds_the_buffer_the_lanes_the_rest_and_the_counts_add_both(conn, settings):
    q = settings.queue
    a = [put(conn, q, tenant="a") for _ in range(6)]
    b = [put(conn, q, tenant="b") for _ in range(2)]
    n = put(conn, q)
    assert conn.llen(keys.rq_queue(q)) == FAIR_BUFFER
    assert waiting(conn, [q]) == {q: 9}
    assert waiting_by_tenant(conn, q) == {"a": 4, "b": 2, "": 1}
    order = drain(conn, q)
    assert sorted(order) == sorted(a + b + [n]) and len(order) == 9  # each job once, nothing left behind
    # The buffer's two first, then a ring of a, b, no tenant: one each per turn.
    assert order == [a[0], a[1], a[2], b[0], n, a[3], b[1], a[4], a[5]]
    assert waiting(conn, [q]) == {q: 0} and conn.hgetall(keys.fair(q) + "n") == {b"*": b"0"}


def test_weights_give_a_tenant_that_many_jobs_per_turn(conn, settings):
    q = settings.queue
    set_weight(conn, "heavy", 3)
    try:
        heavy = [put(conn, q, tenant="heavy") for _ in range(40)]
        light = [put(conn, q, tenant="light") for _ in range(40)]
        order = drain(conn, q)
    finally:
        set_weight(conn, "heavy", 1)
    window = order[FAIR_BUFFER : FAIR_BUFFER + 40]  # both have backlog all along
    assert sum(1 for j in window if j in heavy) == 30 and sum(1 for j in window if j in light) == 10
    assert sorted(order) == sorted(heavy + light)


def test_high_goes_first_low_last_and_a_low_jobs_wait_is_bounded(conn, settings):
    q = settings.queue
    normal = [put(conn, q) for _ in range(5)]
    low = put(conn, q, priority="low")
    high = put(conn, q, priority="high")
    assert drain(conn, q) == [*normal[:2], high, *normal[2:], low]
    # Aging: a low job enqueued more than two offsets ago passes high jobs enqueued now.
    fillers = [put(conn, q) for _ in range(FAIR_BUFFER)]
    old_low = put(conn, q, priority="low")
    lane = keys.fair(q) + "lane:low:"
    entry = conn.lindex(lane, 0).decode()
    ms, _, job_id = entry.partition("|")
    conn.lset(lane, 0, f"{int(ms) - 2 * PRIORITY_OFFSET_S * 1000 - 1000}|{job_id}")
    highs = [put(conn, q, priority="high") for _ in range(3)]
    assert drain(conn, q) == [*fillers, old_low, *highs]


def test_a_task_declares_its_default_priority_and_bad_priorities_are_refused(conn, settings):
    from genqueue.errors import InvalidInput
    from genqueue.jobs.task import task
    from genqueue.tasks.registry import declare

    @task(name=f"urgent-{uuid.uuid4().hex[:6]}", priority="high")
    def urgent() -> None: ...

    q = settings.queue
    normal = [put(conn, q) for _ in range(3)]
    declared = urgent.enqueue_with(queue=q, connection=conn).job.id
    overridden = urgent.enqueue_with(queue=q, connection=conn, priority="low").job.id
    assert drain(conn, q) == [*normal[:2], declared, normal[2], overridden]

    with pytest.raises(InvalidInput, match="priority must be one of high, normal, low"):
        enqueue(conn, settings.queue, {"prompt": "p"}, priority="urgent")
    with pytest.raises(InvalidInput, match="task option priority"):
        declare(lambda: None, name=f"bad-{uuid.uuid4().hex[:6]}", priority=3)
    assert waiting(conn, [settings.queue]) == {settings.queue: 0}


def test_enqueue_many_goes_through_the_lanes(conn, settings):
    q = settings.queue
    first = [put(conn, q, tenant="a") for _ in range(4)]
    many = [j.id for j in enqueue_many(conn, q, [{"prompt": "p"}] * 5)]
    assert conn.llen(keys.rq_queue(q)) == FAIR_BUFFER and waiting(conn, [q]) == {q: 9}
    order = drain(conn, q)
    assert order[:4] == [first[0], first[1], first[2], many[0]]  # the no-tenant share's turn comes at once
    assert sorted(order) == sorted(first + many)


def started(conn, run):
    return [raw.decode() for raw in conn.lrange(f"{run}:started", 0, -1)]


def test_a_tenants_jobs_start_within_a_few_jobs_of_another_tenants_backlog(conn, settings, workers, tasks, run):
    q = settings.queue
    a = [
        enqueue_task(conn, q, f"{tasks}.mark", {"run": run, "wait": 0.02}, tenant="a", check=False).job.id
        for _ in range(150)
    ]
    for _ in range(2):
        workers(extra=("--tasks", tasks))
    wait_for(lambda: len(started(conn, run)) >= 20, timeout=60, message="a's backlog to be under way")
    # b's jobs one at a time (an interactive tenant): each starts within the next 8 jobs taken.
    b = []
    for _ in range(3):
        before = len(started(conn, run))
        b.append(enqueue_task(conn, q, f"{tasks}.mark", {"run": run}, tenant="b", check=False).job.id)
        wait_for(lambda: b[-1] in started(conn, run), timeout=60, message="b's job to start")
        assert started(conn, run).index(b[-1]) - before <= 8
    # A burst of 5: b's k-th job waits for the buffer, the jobs popped already, and one of a's per b's before it.
    burst = {}
    for _ in range(5):
        burst[enqueue_task(conn, q, f"{tasks}.mark", {"run": run}, tenant="b", check=False).job.id] = len(
            started(conn, run)
        )
    wait_for(lambda: all(j in started(conn, run) for j in burst), timeout=60, message="b's burst to start")
    order = started(conn, run)
    for k, (job_id, before) in enumerate(burst.items()):
        assert order.index(job_id) - before <= FAIR_BUFFER + 2 + 2 * (k + 1), (k, order.index(job_id), before)
    assert len(order) < 150  # a's backlog was still there while b's jobs ran
    wait_for(lambda: len(started(conn, run)) == 158, timeout=120, message="every job to start")
    assert sorted(started(conn, run)) == sorted([*a, *b, *burst])


def test_weights_3_to_1_give_throughput_3_to_1_with_real_workers(conn, settings, workers, tasks, run):
    q = settings.queue
    set_weight(conn, "w3", 3)
    try:
        heavy = {
            enqueue_task(conn, q, f"{tasks}.mark", {"run": run}, tenant="w3", check=False).job.id for _ in range(150)
        }
        light = {
            enqueue_task(conn, q, f"{tasks}.mark", {"run": run}, tenant="w1", check=False).job.id for _ in range(150)
        }
        for _ in range(2):
            workers(extra=("--tasks", tasks))
        wait_for(lambda: len(started(conn, run)) == 300, timeout=120, message="every job to start")
    finally:
        set_weight(conn, "w3", 1)
    window = started(conn, run)[:160]  # w3's 150 are taken by about the 200th job: both have backlog here
    share = sum(1 for j in window if j in heavy) / sum(1 for j in window if j in light)
    assert 2.7 <= share <= 3.3, share


def test_a_high_job_behind_a_backlog_starts_within_the_next_few_jobs(conn, settings, workers, tasks, run):
    q = settings.queue
    for _ in range(150):
        enqueue_task(conn, q, f"{tasks}.mark", {"run": run, "wait": 0.02}, check=False)
    workers(extra=("--tasks", tasks))
    wait_for(lambda: len(started(conn, run)) >= 10, timeout=60, message="the backlog to be under way")
    before = len(started(conn, run))
    high = enqueue_task(conn, q, f"{tasks}.mark", {"run": run}, priority="high", check=False).job.id
    wait_for(lambda: high in started(conn, run), timeout=60, message="the high job to start")
    assert started(conn, run).index(high) - before <= 4
    assert len(started(conn, run)) < 150


def test_a_sigkilled_worker_loses_no_job_of_any_lane(conn, settings, workers, tasks, run, env):
    env.update(GENQUEUE_LIVENESS_TTL="1", GENQUEUE_SWEEP_INTERVAL="0.3")
    q = settings.queue
    ids = {
        enqueue_task(conn, q, f"{tasks}.mark", {"run": run, "wait": 0.01}, tenant=f"t{i % 7}", check=False).job.id
        for i in range(300)
    }
    doomed = workers(extra=("--tasks", tasks))
    keeper = workers(extra=("--tasks", tasks))
    wait_for(lambda: len(started(conn, run)) >= 60, timeout=60, message="both workers to be popping")
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(10)
    finished = make_queue(conn, q).finished_job_registry.key
    wait_for(lambda: conn.zcard(finished) == 300, timeout=120, message="every job to finish")
    assert set(started(conn, run)) == ids and keeper.alive()
    assert waiting(conn, [q]) == {q: 0} and conn.llen(make_queue(conn, q).intermediate_queue_key) == 0


def test_the_cli_sets_a_weight_shows_the_lanes_and_refuses_bad_input_in_one_line(conn, settings, env):
    from tests.helpers import run_cli

    tenant = f"cli-{uuid.uuid4().hex[:6]}"
    for _ in range(4):
        put(conn, settings.queue, tenant=tenant)
    try:
        r = run_cli(env, "tenants", "set", tenant, "--weight", "4")
        assert r.code == 0 and r.stdout.strip() == f"{tenant}: weight 4"
        shown = run_cli(env, "tenants", "show", "--json").json()
        assert shown["waiting"] == 4 and {"tenant": tenant, "weight": 4, "waiting": 2} in shown["tenants"]
        bad = run_cli(env, "tenants", "set", tenant, "--weight", "0")
        assert bad.code == 2 and bad.stderr.count("\n") == 1 and "weight must be" in bad.stderr
        prio = run_cli(env, "enqueue", "--payload", '{"prompt": "p"}', "--priority", "urgent")
        assert prio.code == 2 and "Traceback" not in prio.stderr and "urgent" in prio.stderr
    finally:
        set_weight(conn, tenant, 1)
    assert waiting(conn, [settings.queue]) == {settings.queue: 4}
