"""genqueue credits set|add|show through the CLI, and `runs retry-failed` honouring the balance."""

from __future__ import annotations

import uuid

from tests.helpers import run_cli


def test_credits_set_add_show_and_bad_input(env):
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    assert run_cli(env, "credits", "show", tenant, "--json").json() == {
        "tenant": tenant,
        "credits": None,
        "unlimited": True,
    }
    assert run_cli(env, "credits", "set", tenant, "5").stdout.strip() == f"{tenant}: 5 credit(s)"
    assert run_cli(env, "credits", "add", "--json", tenant, "--", "-2").json()["credits"] == 3
    r = run_cli(env, "credits", "add", tenant, "--", "-10")
    assert r.code == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert run_cli(env, "credits", "show", tenant, "--json").json()["credits"] == 3  # nothing changed
    assert run_cli(env, "credits", "set", tenant, "-1").code == 2
    assert run_cli(env, "credits", "set", "two words", "1").code == 2


def test_cli_retry_failed_refuses_without_enough_credits(env, conn, settings):
    from genqueue.runs.store import submit
    from genqueue.tenants import credits
    from tests.api.test_jobs_api import drain

    tenant = f"t-{uuid.uuid4().hex[:6]}"
    run_id = submit(
        conn,
        settings.queue,
        [{"prompt": "x", "simulate": ["500"]}],
        ttl_s=3600,
        max_retries=0,
        run_id=f"credits-{uuid.uuid4().hex[:6]}",
        tenant=tenant,
    ).run.run_id
    drain(env)
    credits.set_balance(conn, tenant, 0)
    r = run_cli(env, "runs", "retry-failed", run_id)
    assert r.code == 4 and "credit" in r.stderr and "Traceback" not in r.stderr
    credits.set_balance(conn, tenant, 1)
    r = run_cli(env, "runs", "retry-failed", run_id, "--json")
    assert r.code == 0 and r.json()["credits_debited"] == 1 and credits.balance(conn, tenant) == 0
