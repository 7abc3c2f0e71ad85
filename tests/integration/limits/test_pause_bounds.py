"""A key's pause is bounded by its job's max_wait (1 h by default) whatever a provider says, and an admin can
end it (`genqueue limits resume`, audited) or remove the key with everything it holds (`genqueue limits rm`).
Real workers against the real server."""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest

from genqueue.backend import audit, keys
from tests.helpers import run_cli, wait_for

TASKS = '''
import genqueue
from genqueue.tasks.providers.headers import pause_if_spent

SPENT = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "99999999h"}


@genqueue.task(limit_key="spent-TAG", limits={"max_wait": 120})
def spent(n: int) -> int:
    """A success whose limit headers say the limit is spent and resets in 99999999 hours (~11,000 years)."""
    pause_if_spent(SPENT)
    return n
'''


def limits_row(env, key):
    r = run_cli(env, "limits", "--key", key, "--json")
    assert r.code == 0, r.stderr
    return r.json()["limits"][0]


def job_status(env, job_id):
    return run_cli(env, "jobs", "show", job_id, "--json").json()["status"]


def pause_ms(conn, key):
    return conn.pttl(keys.limit_prefix(key) + "pause")


def test_a_retry_after_of_95_years_pauses_the_key_for_an_hour_at_most_and_resume_ends_it(env, workers, conn):
    model = f"m{uuid.uuid4().hex[:6]}"
    key = f"simulated:{model}"
    payload = {"prompt": "x", "model": model, "simulate": ["429:retry_after=3000000000", "ok"]}
    first = run_cli(env, "enqueue", "--payload", json.dumps(payload), "--json").json()["id"]
    waiting = run_cli(env, "enqueue", "--payload", json.dumps({"prompt": "y", "model": model}), "--json").json()["id"]
    workers(simple=True)
    wait_for(lambda: job_status(env, waiting) == "parked", message="the second job to park behind the pause")
    assert 3_000_000 < pause_ms(conn, key) <= 3_600_000  # capped at the job's max_wait (1 h), not 95 years
    assert job_status(env, first) == "retrying"

    r = run_cli(env, "limits", "resume", key)
    assert r.code == 0 and "pause ended" in r.stdout, r.stderr
    assert pause_ms(conn, key) == -2
    wait_for(lambda: job_status(env, waiting) == "finished", message="the parked job to run once resumed")
    assert limits_row(env, key)["state"] == "closed"
    [entry] = [a for a in audit.recent(conn, 50) if a["action"] == "limits.resume" and a["filters"]["key"] == key]
    assert entry["counts"]["paused_for_s"] > 3000

    again = run_cli(env, "limits", "resume", key)
    assert again.code == 0 and "neither paused nor open" in again.stdout


def test_a_reset_of_99999999h_pauses_the_key_for_its_jobs_max_wait_at_most(env, workers, conn, tmp_path):
    tag = uuid.uuid4().hex[:8]
    module = f"spenttasks_{tag}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(TASKS.replace("TAG", tag)))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    key = f"spent-{tag}"
    r = run_cli(env, "enqueue", f"{module}.spent", "--kwargs", '{"n": 1}', "--tasks", module, "--json")
    job = r.json()["id"]
    workers(simple=True, extra=("--tasks", module))
    wait_for(lambda: job_status(env, job) == "finished", message="the job to finish")
    assert 100_000 < pause_ms(conn, key) <= 120_000  # the task's declared max_wait: 120 s


def test_rm_removes_the_pause_and_everything_of_an_idle_key(env, workers, conn):
    model = f"m{uuid.uuid4().hex[:6]}"
    key = f"simulated:{model}"
    payload = {"prompt": "x", "model": model, "simulate": ["429:retry_after=600"]}
    job = run_cli(env, "enqueue", "--payload", json.dumps(payload), "--json").json()["id"]
    assert run_cli(env, "limits", "set", key, "--concurrency", "2").code == 0
    workers(simple=True)
    wait_for(lambda: job_status(env, job) == "retrying", message="the 429 to pause the key")
    assert pause_ms(conn, key) > 0

    r = run_cli(env, "limits", "rm", key, "--json")
    assert r.code == 0, r.stderr
    done = r.json()
    assert done["overrides"] is True and done["paused_for_s"] > 500 and done["forgotten"] is True
    assert not conn.sismember(keys.LIMITS_KNOWN, key)
    assert conn.keys(keys.limit_prefix(key).replace("{", "[{]").replace("}", "[}]") + "*") == []
    gone = run_cli(env, "limits", "rm", key)
    assert gone.code != 0 and "no limit key" in gone.stderr and "Traceback" not in gone.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--concurrency", "100000000000000000000000"), "1<=x<=100000"),
        (("--rate", "1/999999999999999999h"), "out of bounds"),
        (("--rate", "99999999/s"), "out of bounds"),
        (("--cooldown", "99999h"), "at most 3600"),
    ],
)
def test_limits_set_refuses_absurd_values(env, args, words):
    r = run_cli(env, "limits", "set", "lab", *args)
    assert r.code == 2, (r.code, r.stderr)
    assert words in r.stderr and "Traceback" not in r.stderr


HOLD_TASKS = """
import time

import genqueue


@genqueue.task(limit_key="hold-TAG", limits={"concurrency": 1, "max_wait": 2})
def hold(n: int, seconds: float = 0.0) -> int:
    time.sleep(seconds)
    return n
"""


def test_a_parked_job_past_its_max_wait_is_dead_lettered(env, workers, conn, store, tmp_path):
    """The key is held at its cap for 8 s; the job parked behind it waits 2 s (its max_wait) at most."""
    tag = uuid.uuid4().hex[:8]
    module = f"holdtasks_{tag}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(HOLD_TASKS.replace("TAG", tag)))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"

    def enqueue(**kwargs):
        r = run_cli(env, "enqueue", f"{module}.hold", "--kwargs", json.dumps(kwargs), "--tasks", module, "--json")
        assert r.code == 0, r.stderr
        return r.json()["id"]

    holder = enqueue(n=1, seconds=8)
    w = workers(simple=True, extra=("--tasks", module))
    other = workers(simple=True, extra=("--tasks", module))  # free to claim, and park, the second job
    wait_for(lambda: job_status(env, holder) == "running", message="the holder to take the only slot")
    waiting = enqueue(n=2)
    wait_for(lambda: job_status(env, waiting) == "parked", message="the second job to park")
    wait_for(lambda: store.exists(waiting), timeout=15, message="the parked job dead-lettered")
    entry = store.get(waiting)
    assert entry["reason"] == "rate_limit_wait_exceeded" and entry["error"]["kind"] == "RATE_LIMITED"
    assert "max_wait (2 s)" in entry["error"]["message"]
    assert job_status(env, holder) == "running"  # it was the wait, not the holder, that ended
    key = f"hold-{tag}"
    assert limits_row(env, key)["parked"] == 0
    assert not conn.zscore(keys.LIMITS_DEADLINES, f"{key}\n-\n{waiting}")
    wait_for(lambda: job_status(env, holder) == "finished", timeout=20, message="the holder to finish")
    assert "limit.wait_exceeded" in w.log() + other.log() and w.alive() and other.alive()
