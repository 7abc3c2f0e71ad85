"""Unit limits with real worker processes: a token limit shared by 4 workers is never exceeded in any window
as the lab provider counts; the move that ends an attempt settles the reservation with what the task
reported (less or more than its estimate) and records it in the usage buckets; a SIGKILLed worker's
reservation comes back with its slot; an estimate over the limit alone is refused at enqueue."""

from __future__ import annotations

import json
import textwrap
import time
import uuid

import pytest

from genqueue.backend import keys
from tests.helpers import run_cli, wait_for

TASKS = '''
import time

from rq import get_current_job

import genqueue

LIMIT = "LIMIT_TOKENS"


@genqueue.task(
    limit_key="tok-TAG",
    limits={"tokens": LIMIT},
    estimate=lambda kw: {"tokens": kw["est"]},
    policy={"CRASH": {"max": 5, "base": 0.1, "cap": 0.2}},
)
def llm(n: int, est: int, actual: int | None = None, seconds: float = 0.05, hold: bool = False) -> int:
    """The lab provider: counts the tokens of every call at its call time (tok-TAG:calls), then answers."""
    conn = get_current_job().connection
    ctx = genqueue.current()
    spent = est if actual is None else actual
    conn.rpush("tok-TAG:calls", f"{time.time()}:{spent}:{n}:{ctx.attempt}")
    if hold and ctx.attempt == 1:  # keep the reservation until the test kills this worker
        conn.blpop("tok-TAG:release", timeout=120)
    time.sleep(seconds)
    if actual is not None:
        ctx.usage(input_tokens=actual // 2, output_tokens=actual - actual // 2)
    conn.rpush("tok-TAG:done", n)
    return n


@genqueue.task(limit_key="tok-TAG", estimate={"tokens": 50})
async def allm(n: int, actual: int, usd: float = 0.0) -> int:
    """An async task: its usage reported from the event loop of a --concurrency worker."""
    ctx = genqueue.current()
    ctx.usage(input_tokens=actual)
    ctx.usage(output_tokens=actual, usd=usd)
    return n
'''


def lab(tmp_path, env, limit: str):
    tag = uuid.uuid4().hex[:8]
    name = f"toktasks_{tag}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS.replace("TAG", tag).replace("LIMIT_TOKENS", limit)))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    return name, tag


def enqueue(env, module, **kwargs):
    r = run_cli(env, "enqueue", f"{module}.llm", "--kwargs", json.dumps(kwargs), "--tasks", module, "--json")
    assert r.code == 0, r.stderr
    return r.json()["id"]


def units_row(env, key):
    r = run_cli(env, "limits", "--key", key, "--json")
    assert r.code == 0, r.stderr
    row = r.json()["limits"][0]
    return row, row["units"].get("tokens", {"used": 0, "reserved": 0})


def calls(conn, tag):
    out = []
    for raw in conn.lrange(f"tok-{tag}:calls", 0, -1):
        at, spent, n, attempt = raw.decode().split(":")
        out.append((float(at), int(spent), int(n), int(attempt)))
    return sorted(out)


def recorded(conn, module, tag):
    """The usage buckets' tokens for this task (every hour bucket a test may span)."""
    total: dict[str, float] = {}
    for key in conn.scan_iter(keys.USAGE_PREFIX + "h:*"):
        for field, amount in conn.hgetall(key).items():
            tenant, task, limit_key, unit = field.decode().split(keys.USAGE_FIELD_SEP)
            if task == f"{module}.llm" and limit_key == f"tok-{tag}":
                total[unit] = total.get(unit, 0.0) + float(amount)
    return total


def test_a_token_limit_is_never_exceeded_in_any_window_across_four_workers(tmp_path, env, workers, conn):
    module, tag = lab(tmp_path, env, "1000/2s")
    sizes = [150, 320, 90, 260, 400, 120, 210, 350, 60, 180] * 3
    ids = [enqueue(env, module, n=i, est=size + 20, actual=size) for i, size in enumerate(sizes)]
    for simple in (False, False, True, True):
        workers(simple=simple, extra=("--tasks", module))
    wait_for(lambda: conn.llen(f"tok-{tag}:done") == len(ids), timeout=120, message="every job to finish")
    seen = calls(conn, tag)
    for start, *_ in seen:  # every window of 2 s that starts at a call: what the provider saw in it
        in_window = sum(spent for at, spent, *_ in seen if start <= at < start + 2.0)
        assert in_window <= 1000, (start, in_window)
    row, tokens = units_row(env, f"tok-{tag}")
    assert tokens["reserved"] == 0 and row["in_flight"] == 0
    assert row["counters"].get("unit_throttled", 0) > 0  # the limit really held jobs back
    assert recorded(conn, module, tag)["tokens"] == sum(sizes) == sum(spent for _, spent, *_ in seen)


def test_settle_replaces_the_estimate_by_less_or_more_and_records_it(tmp_path, env, workers, conn):
    module, tag = lab(tmp_path, env, "10k/m")
    workers(simple=True, extra=("--tasks", module))
    enqueue(env, module, n=1, est=300, actual=100)
    wait_for(lambda: conn.llen(f"tok-{tag}:done") == 1, timeout=60, message="the first job")
    wait_for(lambda: units_row(env, f"tok-{tag}")[1]["used"] == 100, message="the window to count 100, not 300")
    enqueue(env, module, n=2, est=300, actual=700)
    wait_for(lambda: conn.llen(f"tok-{tag}:done") == 2, timeout=60, message="the second job")
    wait_for(lambda: units_row(env, f"tok-{tag}")[1]["used"] == 800, message="the window to count 700 more")
    assert units_row(env, f"tok-{tag}")[1]["reserved"] == 0
    enqueue(env, module, n=3, est=250)  # reports nothing: its estimate is what it spent
    wait_for(lambda: conn.llen(f"tok-{tag}:done") == 3, timeout=60, message="the third job")
    wait_for(lambda: units_row(env, f"tok-{tag}")[1]["used"] == 1050, message="the estimate settled")
    assert recorded(conn, module, tag) == {
        "tokens": 1050.0,
        "input_tokens": 50.0 + 350.0,
        "output_tokens": 50.0 + 350.0,
    }
    day = conn.hget(keys.usage_tenant_day("*", int(time.time()) // 86400), "tokens")
    assert float(day or 0) >= 1050  # the tenant's day (other tests' jobs without a tenant count there too)


def test_a_killed_workers_reservation_comes_back_with_its_slot(tmp_path, env, workers, conn):
    module, tag = lab(tmp_path, env, "1000/3s")
    env.update(GENQUEUE_LIVENESS_TTL="2", GENQUEUE_SWEEP_INTERVAL="0.5")
    holder = enqueue(env, module, n=1, est=800, actual=200, hold=True)
    a = workers(extra=("--tasks", module))
    wait_for(lambda: units_row(env, f"tok-{tag}")[1]["reserved"] == 800, message="the holder's reservation")
    b = workers(simple=True, extra=("--tasks", module))
    other = enqueue(env, module, n=2, est=500, actual=100)
    wait_for(lambda: units_row(env, f"tok-{tag}")[0]["parked"] == 1, message="the other job parked: no room")
    a.kill()  # SIGKILL: the horse goes with it; its reservation is held by a dead worker

    def status(job_id):
        return run_cli(env, "jobs", "show", job_id, "--json").json()["status"]

    wait_for(
        lambda: status(holder) == "finished" and status(other) == "finished",
        timeout=90,
        message="both jobs to finish once the reservation came back",
    )
    assert b.alive()
    assert units_row(env, f"tok-{tag}")[1]["reserved"] == 0
    assert recorded(conn, module, tag)["tokens"] == 300  # the killed attempt recorded nothing


def test_an_estimate_over_the_limit_alone_is_refused_at_enqueue(tmp_path, env, conn):
    module, tag = lab(tmp_path, env, "1000/m")
    r = run_cli(env, "enqueue", f"{module}.llm", "--kwargs", json.dumps({"n": 1, "est": 1001}), "--tasks", module)
    assert r.code == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "exceeds the limit 1k/m" in r.stderr
    assert run_cli(env, "limits", "set", f"tok-{tag}", "--tokens", "2k/m").code == 0  # set live: it fits now
    r = run_cli(env, "enqueue", f"{module}.llm", "--kwargs", json.dumps({"n": 1, "est": 1001}), "--tasks", module)
    assert r.code == 0, r.stderr


@pytest.mark.parametrize("bad", ["90k", "5m/m", "0/m"])
def test_limits_set_refuses_a_bad_unit_limit_in_one_line(env, bad):
    r = run_cli(env, "limits", "set", "tok-x", "--tokens", bad)
    assert r.code == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_async_tasks_on_a_concurrent_worker_report_usage(tmp_path, env, workers, conn):
    """Usage adds up within an attempt and is recorded by the concurrent worker's moves too, on a key without
    unit limits; a job with no tenant counts under "*"; tokens = input + output; usd kept as a float."""
    from genqueue.jobs.enqueue import enqueue_task

    module, tag = lab(tmp_path, env, "10k/m")
    for n in range(10):
        enqueue_task(conn, env["GENQUEUE_QUEUE"], f"{module}.allm", {"n": n, "actual": 10, "usd": 0.25}, check=False)
    workers(extra=("--concurrency", "4", "--tasks", module))

    def totals():
        out: dict[str, float] = {}
        for key in conn.scan_iter(keys.USAGE_PREFIX + "h:*"):
            for field, amount in conn.hgetall(key).items():
                tenant, task, limit_key, unit = field.decode().split(keys.USAGE_FIELD_SEP)
                if task == f"{module}.allm":
                    assert (tenant, limit_key) == ("*", f"tok-{tag}")
                    out[unit] = out.get(unit, 0.0) + float(amount)
        return out

    wait_for(lambda: totals().get("tokens") == 200, timeout=60, message="ten jobs' usage recorded")
    assert totals() == {"tokens": 200.0, "input_tokens": 100.0, "output_tokens": 100.0, "usd": 2.5}
    assert units_row(env, f"tok-{tag}")[0]["units"] == {}  # no unit limit declared by allm: recorded all the same


def test_limits_set_shows_and_rm_removes_unit_limits(env):
    key = f"tok-{uuid.uuid4().hex[:8]}"
    r = run_cli(env, "limits", "set", key, "--tokens", "90k/m", "--images", "50/m", "--usd", "200/d")
    assert r.code == 0, r.stderr
    assert "tokens 90k/m, images 50/m, usd 200/d" in r.stdout
    shown = run_cli(env, "limits", "--key", key)
    assert "tokens 0+0/90k/m, images 0+0/50/m, usd 0+0/200/d" in shown.stdout
    assert run_cli(env, "limits", "rm", key).code == 0
    assert units_row(env, key)[0]["units"] == {}
