"""A spent budget at enqueue, through each face: Python raises BudgetSpent, the CLI says one line and exits 4,
a `park` budget schedules the job for the period's reset; the breach is logged and counted once per period;
running jobs are not touched (nothing is checked after enqueue)."""

from __future__ import annotations

import time
import uuid

import pytest
from rq.job import JobStatus

from genqueue.backend import keys
from genqueue.backend.queues import fetch_job
from genqueue.errors import BudgetSpent
from genqueue.jobs.enqueue import enqueue, enqueue_many
from genqueue.runs.store import submit
from genqueue.usage.budget_store import admit, breach_counts, set_budget
from genqueue.usage.budgets import make_budget, parse_cap, period_id, resets_at
from tests.helpers import run_cli
from tests.usage_helpers import record


def budget(when: str = "refuse", *caps: tuple[str, str]):
    return make_budget([parse_cap(u, t) for u, t in caps or (("usd", "10/d"),)], when)


def test_a_spent_refuse_budget_refuses_new_jobs_in_python_and_counts_the_breach_once(conn, settings):
    t = f"b-{uuid.uuid4().hex[:6]}"
    set_budget(conn, t, budget())
    record(conn, t, "usd", 9.99)
    assert enqueue(conn, settings.queue, {"prompt": "p"}, tenant=t).created  # under the cap: accepted
    first = enqueue(conn, settings.queue, {"prompt": "p"}, tenant=t, job_id=f"{t}-1")
    before = breach_counts(conn)
    record(conn, t, "usd", 0.01)
    for _ in range(2):
        with pytest.raises(BudgetSpent) as caught:
            enqueue(conn, settings.queue, {"prompt": "p"}, tenant=t)
    assert "usd 10 of 10 this day" in str(caught.value) and "nothing was enqueued" in str(caught.value)
    again = enqueue(conn, settings.queue, {"prompt": "p"}, tenant=t, job_id=f"{t}-1")  # an idempotent repeat
    assert (again.created, again.id) == (False, first.id)  # of a live job returns it, spent or not
    after = breach_counts(conn)
    assert after.get("usd:d", 0) - before.get("usd:d", 0) == 1  # once per tenant and period
    assert after.get("refused", 0) - before.get("refused", 0) == 3  # the check's refusals (the repeat's too)
    assert conn.exists(keys.budget_breach(t, "usd", "d", period_id("d", time.time())))
    with pytest.raises(BudgetSpent):  # a run too
        submit(conn, settings.queue, [{"prompt": "p"}], ttl_s=600, tenant=t)
    other = f"c-{uuid.uuid4().hex[:6]}"
    assert enqueue(conn, settings.queue, {"prompt": "p"}, tenant=other).created  # other tenants unaffected


def test_a_budget_on_the_jobs_with_no_tenant_covers_enqueue_many(conn, settings):
    from genqueue.usage.budget_store import clear_budget

    set_budget(conn, "*", budget())
    try:
        record(conn, "*", "usd", 10)
        with pytest.raises(BudgetSpent):
            enqueue_many(conn, settings.queue, [{"prompt": "p"}])
    finally:
        clear_budget(conn, "*")
        conn.hincrbyfloat(keys.usage_tenant_day("*", int(time.time() // 86400)), "usd", -10)


def test_a_spent_park_budget_schedules_the_job_for_the_reset(conn, settings):
    t = f"p-{uuid.uuid4().hex[:6]}"
    set_budget(conn, t, budget("park", ("tokens", "1k/month")))
    record(conn, t, "tokens", 1000)
    now = time.time()
    result = enqueue(conn, settings.queue, {"prompt": "p"}, tenant=t)
    reset = resets_at("month", now)
    job = fetch_job(conn, result.id)
    assert job.get_status() == JobStatus.SCHEDULED
    assert conn.zscore(keys.rq_scheduled(settings.queue), result.id) == int(reset)
    assert job.meta["genqueue"]["budget_parked_until"] == reset
    assert admit(conn, t, now=reset) is None  # the next period has no usage yet: its jobs run


def test_the_cli_refuses_in_one_line_with_exit_4(env, conn):
    t = f"cli-{uuid.uuid4().hex[:6]}"
    r = run_cli(env, "budgets", "set", t, "--usd", "1/d", "--tokens", "2M/month", "--json")
    assert r.code == 0, r.stderr
    assert [(c["unit"], c["period"], c["limit"]) for c in r.json()["data"][0]["caps"]] == [
        ("tokens", "month", 2e6),
        ("usd", "d", 1.0),
    ]
    record(conn, t, "usd", 1)
    r = run_cli(env, "enqueue", "--payload", f'{{"prompt": "p", "user_id": "{t}"}}')
    assert r.code == 4, (r.stdout, r.stderr)
    *logged, last = r.stderr.strip().splitlines()  # the first breach of the period is logged, once
    assert last.startswith("error: tenant ") and "budget is spent" in last and "Traceback" not in r.stderr
    assert [line for line in logged if '"budget.spent"' in line], logged
    again = run_cli(env, "enqueue", "--payload", f'{{"prompt": "p", "user_id": "{t}"}}')
    assert again.code == 4 and again.stderr.strip().splitlines() == [last]  # not logged twice
    r = run_cli(env, "budgets", "show", t)
    assert r.code == 0 and "SPENT until" in r.stdout and "1 per day" in r.stdout
    assert run_cli(env, "budgets", "set", t, "--usd", "1/h").code == 2
    assert run_cli(env, "budgets", "set", t).code == 2  # no cap
    assert run_cli(env, "budgets", "clear", t).code == 0
    assert run_cli(env, "budgets", "clear", t).code == 3
    assert run_cli(env, "budgets", "show", t).code == 3
    assert run_cli(env, "enqueue", "--payload", f'{{"prompt": "p", "user_id": "{t}"}}').code == 0


def test_usage_cli_equals_the_buckets(env, conn):
    t = f"u-{uuid.uuid4().hex[:6]}"
    record(conn, t, "usd", 0.5, task="chat", key="openai:gpt")
    record(conn, t, "output_tokens", 42, task="chat", key="openai:gpt")
    record(conn, t, "usd", 0.25, task="img", key="")
    r = run_cli(env, "usage", "--tenant", t, "--by", "task,key", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["data"] == [
        {"task": "chat", "key": "openai:gpt", "usage": {"output_tokens": 42.0, "usd": 0.5}},
        {"task": "img", "key": "", "usage": {"usd": 0.25}},
    ]
    table = run_cli(env, "usage", "--tenant", t).stdout
    assert t in table and "0.75" in table and "42" in table
    bad = run_cli(env, "usage", "--by", "colour")
    assert bad.code == 2 and bad.stderr.startswith("error: ")


def test_a_parked_job_runs_on_a_real_worker_once_the_reset_is_due(env, conn, settings):
    """The reset arriving is the scheduled time passing: the job's score is moved to now (as the clock would),
    and a real burst worker's scheduler brings it to the queue and runs it like any scheduled job."""
    from genqueue.jobs.status import job_status
    from tests.api.test_jobs_api import drain

    t = f"r-{uuid.uuid4().hex[:6]}"
    set_budget(conn, t, budget("park", ("images", "2/d")))
    record(conn, t, "images", 2)
    job_id = enqueue(conn, settings.queue, {"prompt": "p"}, tenant=t).id
    drain(env)
    assert fetch_job(conn, job_id).get_status() == JobStatus.SCHEDULED  # not before its reset
    conn.zadd(keys.rq_scheduled(settings.queue), {job_id: int(time.time()) - 1}, xx=True)
    drain(env)
    assert job_status(conn, None, job_id)["status"] == "finished"
