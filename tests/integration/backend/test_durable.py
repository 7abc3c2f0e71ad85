"""GENQUEUE_WAIT_REPLICAS: an enqueue is acknowledged only once the replicas have it. A primary and one replica
on loopback; the replica SIGSTOPped makes the acknowledgement fall short: NotDurable (exit 5 in the CLI), the
job on the primary, and a retry with the same id acknowledged once the replica is back."""

from __future__ import annotations

import os
import signal

import pytest

from genqueue.backend import durable
from genqueue.backend.connection import connect_url
from genqueue.errors import NotDurable
from genqueue.jobs.enqueue import enqueue, enqueue_many
from tests.ha_servers import primary_and_replica
from tests.helpers import run_cli


@pytest.fixture
def pair(tmp_path):
    primary, replica = primary_and_replica(tmp_path)
    yield primary, replica
    os.kill(replica.proc.pid, signal.SIGCONT)
    replica.kill()
    primary.kill()


@pytest.mark.parametrize("replicas", [1, durable.ALL], ids=["one", "all"])
def test_an_enqueue_waits_for_the_replicas_and_says_when_they_fall_short(pair, queue_name, replicas):
    primary, replica = pair
    url = f"redis://127.0.0.1:{primary.port}/0"
    # A healthy replica acknowledges at once, so the timeout only bounds the wait: 10 s where it must succeed
    # (a loaded machine may take a while), 0.3 s where it must fall short (the replica is stopped).
    patient = durable.attach(connect_url(url), replicas, 10)
    conn = durable.attach(connect_url(url), replicas, 0.3)
    assert enqueue(patient, queue_name, {"prompt": "p"}, job_id=f"{queue_name}-a").created
    assert replica.client().exists(f"rq:job:{queue_name}-a"), "acknowledged means on the replica"
    os.kill(replica.proc.pid, signal.SIGSTOP)
    job_id = f"{queue_name}-b"
    with pytest.raises(NotDurable) as info:
        enqueue(conn, queue_name, {"prompt": "p"}, job_id=job_id)
    assert info.value.retryable and info.value.exit_code == 5 and "0 of 1 replica" in str(info.value)
    assert primary.client().exists(f"rq:job:{job_id}"), "written on the primary all the same"
    with pytest.raises(NotDurable):
        enqueue(conn, queue_name, {"prompt": "p"}, job_id=job_id)  # the retry is not acknowledged either
    with pytest.raises(NotDurable):
        enqueue_many(conn, queue_name, [{"prompt": "p"}] * 3)
    os.kill(replica.proc.pid, signal.SIGCONT)
    again = enqueue(patient, queue_name, {"prompt": "p"}, job_id=job_id)
    assert not again.created and again.job.id == job_id, "the retry with the same id is idempotent"
    assert replica.client().exists(f"rq:job:{job_id}")
    from genqueue.tenants.fair import waiting

    assert waiting(primary.client(), [queue_name])[queue_name] == 2 + 3  # RQ's list and the fair lanes


def test_the_cli_says_not_durable_in_one_line_exit_5(pair, env, queue_name):
    primary, replica = pair
    e = dict(env, REDIS_URL=f"redis://127.0.0.1:{primary.port}/0", GENQUEUE_WAIT_REPLICAS="all")
    ok = run_cli(
        dict(e, GENQUEUE_WAIT_TIMEOUT="10"), "enqueue", "--payload", '{"prompt": "p"}', "--job-id", f"{queue_name}-x"
    )
    assert ok.code == 0, ok.stderr
    os.kill(replica.proc.pid, signal.SIGSTOP)
    e["GENQUEUE_WAIT_TIMEOUT"] = "0.3"
    result = run_cli(e, "enqueue", "--payload", '{"prompt": "p"}', "--job-id", f"{queue_name}-y")
    assert result.code == 5
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "GENQUEUE_WAIT_REPLICAS" in line
    bad = run_cli(dict(e, GENQUEUE_WAIT_REPLICAS="most"), "enqueue", "--payload", '{"prompt": "p"}')
    assert bad.code == 2 and "GENQUEUE_WAIT_REPLICAS" in bad.stderr
