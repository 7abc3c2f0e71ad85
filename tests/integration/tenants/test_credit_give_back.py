"""A retry credit already charged for a job (`runs retry-failed` of a tenant with a balance) is given back when
the job is canceled — queued (the Lua move) or running (the worker's move) — in the cancel move, once."""

from __future__ import annotations

import uuid

from genqueue.jobs.status import job_status
from genqueue.runs.store import retry_failed, submit
from genqueue.tenants import credits
from tests.api.test_jobs_api import drain
from tests.helpers import run_cli, wait_for


def failed_item_retried_with_a_credit(conn, settings, env, balance: int = 3) -> tuple[str, str]:
    """(tenant, item id): a run's one item dead-lettered, then retried by Continue for one credit."""
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    run = submit(
        conn,
        settings.queue,
        [{"prompt": "x", "simulate": ["500"]}],
        ttl_s=3600,
        max_retries=0,
        run_id=f"giveback-{uuid.uuid4().hex[:6]}",
        tenant=tenant,
    ).run
    drain(env)
    credits.set_balance(conn, tenant, balance)
    result = retry_failed(conn, run.run_id, ttl_s=3600)
    assert result.credits_debited == 1 and credits.balance(conn, tenant) == balance - 1
    [item] = result.charged
    return tenant, item


def test_queued_job_canceled_gets_its_credit_back_once(conn, settings, store, env):
    tenant, item = failed_item_retried_with_a_credit(conn, settings, env)
    assert job_status(conn, store, item)["status"] == "queued"
    r = run_cli(env, "jobs", "cancel", item, "--json")
    assert r.code == 0 and r.json()["previous_status"] == "queued", r.stderr
    assert credits.balance(conn, tenant) == 3
    assert run_cli(env, "jobs", "cancel", item, "--json").json()["already"] is True
    assert credits.balance(conn, tenant) == 3  # once


def test_running_job_canceled_gets_its_credit_back_once(conn, settings, store, env, workers):
    tenant, item = failed_item_retried_with_a_credit(conn, settings, env)
    env["GENQUEUE_SIM_LATENCY"] = "60"  # the retried call runs until the worker stops it
    env["GENQUEUE_CANCEL_GRACE"] = "1"
    workers()
    wait_for(lambda: job_status(conn, store, item)["status"] == "running", timeout=60, message="the item to run")
    r = run_cli(env, "jobs", "cancel", item, "--json")
    assert r.code == 0 and r.json()["stopping"] is True, r.stderr
    assert credits.balance(conn, tenant) == 2  # not yet: the move that ends the attempt gives it back
    wait_for(lambda: job_status(conn, store, item)["status"] == "canceled", timeout=60, message="the cancel")
    assert credits.balance(conn, tenant) == 3
    assert run_cli(env, "jobs", "cancel", item, "--json").json()["already"] is True
    assert credits.balance(conn, tenant) == 3


def test_tenant_without_a_balance_stays_unlimited(conn, settings, store, env):
    tenant, item = failed_item_retried_with_a_credit(conn, settings, env, balance=1)
    conn.delete(credits.credits_key(tenant))  # made unlimited meanwhile
    assert run_cli(env, "jobs", "cancel", item).code == 0
    assert credits.balance(conn, tenant) is None
