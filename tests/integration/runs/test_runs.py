"""Runs end to end: submit, show, retry-failed through the CLI, against the real server and real workers."""

from __future__ import annotations

import json
import subprocess
import sys

from genqueue.backend import keys
from genqueue.errors import Conflict
from genqueue.runs.rules import item_id, run_key
from genqueue.runs.store import retry_failed, snapshot, submit
from genqueue.tenants.fair import waiting_ids
from tests.dlq_helpers import make_entry
from tests.helpers import race, run_cli, wait_for


def write_run(tmp_path, rows, name="run.jsonl") -> str:
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


def run_reaches(conn, settings, run_id, status, timeout=60, **counts):
    def check():
        snap = snapshot(conn, run_id, ttl_s=settings.dlq_retention_s, details=False)
        return snap.status == status and all(snap.counts.get(k, 0) == n for k, n in counts.items()) and snap

    return wait_for(check, timeout, message=f"run {run_id} to be {status} with {counts}")


def meta_of(conn, job_id) -> dict:
    return json.loads(conn.hget(f"rq:job:{job_id}", "meta"))["genqueue"]


def queued_ids(conn, settings) -> list[str]:
    return waiting_ids(conn, settings.queue)  # RQ's list and the fair lanes


def test_resubmitting_never_duplicates_before_or_after_the_run_completes(conn, settings, workers, env, tmp_path):
    run_id = f"{settings.queue}-ok"
    path = write_run(tmp_path, [{"prompt": f"p{i}", "simulate": ["ok"]} for i in range(3)])
    first = run_cli(env, "runs", "submit", path, "--run-id", run_id, "--json")
    assert first.code == 0, first.stderr
    assert first.json() == {
        "run_id": run_id,
        "queue": settings.queue,
        "items": 3,
        "created": True,
        "enqueued": 3,
        "existing": 0,
    }
    second = run_cli(env, "runs", "submit", path, "--run-id", run_id, "--json")
    assert second.json()["created"] is False and second.json()["enqueued"] == 0
    assert queued_ids(conn, settings) == [item_id(run_id, i) for i in range(3)]
    assert item_id(run_id, 2) == f"{run_id}-item-2"
    shown = run_cli(env, "runs", "show", run_id, "--json").json()
    assert shown["status"] == "running" and shown["counts"] == {"queued": 3}

    workers()
    run_reaches(conn, settings, run_id, "completed", finished=3)
    ended = [conn.hget(f"rq:job:{item_id(run_id, i)}", "ended_at") for i in range(3)]
    third = run_cli(env, "runs", "submit", path, "--run-id", run_id, "--json")
    assert third.code == 0 and third.json()["enqueued"] == 0 and third.json()["existing"] == 3
    assert queued_ids(conn, settings) == []
    assert [conn.hget(f"rq:job:{item_id(run_id, i)}", "ended_at") for i in range(3)] == ended  # nothing re-ran
    table = run_cli(env, "runs", "show", run_id)
    assert table.code == 0 and "completed" in table.stdout and "finished  3" in table.stdout


def test_same_file_without_run_id_is_one_run_and_other_items_under_its_id_conflict(conn, settings, env, tmp_path):
    path = write_run(tmp_path, [{"prompt": f"{settings.queue} a"}, {"prompt": f"{settings.queue} b"}])
    a = run_cli(env, "runs", "submit", path, "--json").json()
    b = run_cli(env, "runs", "submit", path, "--json").json()
    assert a["run_id"] == b["run_id"] and a["run_id"].startswith("run-")
    assert (a["enqueued"], b["enqueued"]) == (2, 0) and len(queued_ids(conn, settings)) == 2
    other = write_run(tmp_path, [{"prompt": "different"}], name="other.jsonl")
    clash = run_cli(env, "runs", "submit", other, "--run-id", a["run_id"])
    assert clash.code == 4 and "different items" in clash.stderr and len(queued_ids(conn, settings)) == 2
    options = run_cli(env, "runs", "submit", path, "--run-id", a["run_id"], "--max-retries", "5")
    assert options.code == 4


def test_bad_run_files_exit_2_naming_the_lines_and_enqueue_nothing(conn, settings, env, tmp_path):
    run_id = f"{settings.queue}-bad"
    path = write_run(
        tmp_path, ['{"prompt": "fine"}', "{bad json", '{"prompt": "fine too"}', '{"prompt": ""}', "[1, 2]"]
    )
    r = run_cli(env, "runs", "submit", path, "--run-id", run_id)
    assert r.code == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "line 2:" in r.stderr and "line 4:" in r.stderr and "line 5:" in r.stderr
    assert "line 1:" not in r.stderr and "line 3:" not in r.stderr
    envelope = run_cli(env, "runs", "submit", path, "--run-id", run_id, "--json").json()
    assert envelope["error"]["code"] == "INVALID_INPUT" and envelope["error"]["status_code"] == 2
    empty = write_run(tmp_path, ["", "  "], name="empty.jsonl")
    for args in (
        [path, "--run-id", run_id],
        [empty],
        [str(tmp_path / "no-such.jsonl")],
        [write_run(tmp_path, ['{"prompt": "x"}'], name="ok.jsonl"), "--run-id", "has:colon"],
    ):
        bad = run_cli(env, "runs", "submit", *args)
        assert bad.code == 2 and bad.stderr.count("\n") == 1, (args, bad.stderr)
    assert queued_ids(conn, settings) == [] and not conn.exists(run_key(run_id))
    assert not conn.exists(f"rq:job:{item_id(run_id, 0)}")


def test_unknown_run_exits_3(env):
    for args in (
        ["runs", "show", "no-such-run"],
        ["runs", "retry-failed", "no-such-run"],
        ["runs", "show", "no-such-run", "--watch"],
    ):
        r = run_cli(env, *args)
        assert r.code == 3 and r.stderr.startswith("error: no run no-such-run") and r.stderr.count("\n") == 1
    assert run_cli(env, "runs", "show", "no-such-run", "--json").json()["error"]["code"] == "NOT_FOUND"


def test_retry_limit_outside_1_to_10_exits_2_before_anything_else(env):
    for limit in ("0", "11", "-3"):
        r = run_cli(env, "runs", "retry-failed", "no-such-run", "--max-retries", limit)
        assert r.code == 2 and "1<=x<=10" in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_retry_failed_crash_free_user_error_never_others_charged(conn, settings, store, workers, env, tmp_path):
    run_id = f"{settings.queue}-mix"
    ids = [item_id(run_id, i) for i in range(4)]
    path = write_run(
        tmp_path,
        [
            {"prompt": "fine", "simulate": ["ok"]},
            {"prompt": "flaky", "simulate": ["500", "ok"]},
            {"prompt": "rejected", "simulate": ["422"], "params": {"api_key": "sk-live-9"}},
            {"prompt": "crashes", "simulate": ["crash", "crash", "crash", "crash", "ok"]},
        ],
    )
    assert run_cli(env, "runs", "submit", path, "--run-id", run_id, "--max-retries", "0").code == 0
    workers()
    run_reaches(conn, settings, run_id, "partially_failed", finished=1, dead=3)
    shown = run_cli(env, "runs", "show", run_id, "--json").json()
    assert {f["id"]: f["retry"] for f in shown["failed_items"]} == {ids[1]: "charged", ids[2]: "never", ids[3]: "free"}
    assert "sk-live" not in run_cli(env, "runs", "show", run_id).stdout
    resubmit = run_cli(env, "runs", "submit", path, "--run-id", run_id, "--max-retries", "0", "--json").json()
    assert resubmit["enqueued"] == 0 and store.exists(ids[2]) and not conn.exists(f"rq:job:{ids[2]}")

    r = run_cli(env, "runs", "retry-failed", run_id, "--json")
    assert r.code == 0, r.stderr
    body = r.json()
    assert (body["charged"], body["free"], body["never_retried"]) == ([ids[1]], [ids[3]], [ids[2]])
    assert body["run_retry"] == 1
    assert not store.exists(ids[1]) and not store.exists(ids[3]) and store.exists(ids[2])
    run_reaches(conn, settings, run_id, "partially_failed", finished=3, dead=1)
    manual = {i: [h for h in meta_of(conn, ids[i])["history"] if h["action"] == "manual_retry"] for i in (1, 3)}
    assert [(h["charged"], h["run_retry"], h["via"]) for h in manual[1]] == [(True, 1, "runs retry-failed")]
    assert [(h["charged"], h["previous"]["reason"]) for h in manual[3]] == [(False, "crash_loop")]
    assert conn.hget(run_key(run_id), "retries") == b"1"

    again = run_cli(env, "runs", "retry-failed", run_id)
    assert again.code == 1 and "nothing to retry" in again.stderr and "never retried" in again.stderr
    assert store.exists(ids[2]) and conn.hget(run_key(run_id), "retries") == b"1"


def test_all_or_nothing_when_one_item_is_over_the_limit(conn, settings, store, workers, env, tmp_path):
    run_id = f"{settings.queue}-cap"
    a, b = item_id(run_id, 0), item_id(run_id, 1)
    path = write_run(tmp_path, [{"prompt": "a", "simulate": ["500"]}, {"prompt": "b", "simulate": ["500"]}])
    assert run_cli(env, "runs", "submit", path, "--run-id", run_id, "--max-retries", "0").code == 0
    workers()
    run_reaches(conn, settings, run_id, "failed", dead=2)
    forced = run_cli(env, "jobs", "retry", a, "--force", "--json")  # a charged manual retry of item a only
    assert forced.code == 0 and forced.json()["charged"] is True
    wait_for(lambda: store.exists(a) and len(store.get(a)["history"]) == 3, message="item a dead again")

    refused = run_cli(env, "runs", "retry-failed", run_id, "--max-retries", "1")
    assert refused.code == 4 and "retry limit reached" in refused.stderr
    assert f"{a} (1 charged)" in refused.stderr and b not in refused.stderr
    assert store.exists(a) and store.exists(b) and queued_ids(conn, settings) == []
    assert conn.hget(run_key(run_id), "retries") == b"0"
    code = run_cli(env, "runs", "retry-failed", run_id, "--max-retries", "1", "--json").json()["error"]["code"]
    assert code == "RETRY_LIMIT_REACHED"

    ok = run_cli(env, "runs", "retry-failed", run_id, "--max-retries", "2", "--json")
    assert ok.code == 0 and sorted(ok.json()["charged"]) == [a, b]
    run_reaches(conn, settings, run_id, "failed", dead=2)
    assert [h["charged"] for h in store.get(a)["history"] if h["action"] == "manual_retry"] == [True, True]


def test_conflict_while_the_run_is_running(conn, settings, store, workers, env, tmp_path):
    run_id = f"{settings.queue}-busy"
    dead, busy = item_id(run_id, 0), item_id(run_id, 1)
    path = write_run(tmp_path, [{"prompt": "bad", "simulate": ["422"]}, {"prompt": "slow", "simulate": ["sleep=60"]}])
    assert run_cli(env, "runs", "submit", path, "--run-id", run_id).code == 0
    w = workers()
    run_reaches(conn, settings, run_id, "running", dead=1, running=1)
    r = run_cli(env, "runs", "retry-failed", run_id)
    assert r.code == 4 and f"run {run_id} is running (1 running)" in r.stderr
    assert store.exists(dead) and conn.hget(f"rq:job:{busy}", "status") == b"started"
    assert conn.hget(run_key(run_id), "retries") == b"0"
    w.kill()


def test_concurrent_double_retry_failed_exactly_one_wins(conn, settings, store, workers, env, tmp_path):
    run_id = f"{settings.queue}-race"
    ids = [item_id(run_id, i) for i in range(3)]
    path = write_run(tmp_path, [{"prompt": f"p{i}", "simulate": ["500", "ok"]} for i in range(3)])
    assert run_cli(env, "runs", "submit", path, "--run-id", run_id, "--max-retries", "0").code == 0
    w = workers()
    run_reaches(conn, settings, run_id, "failed", dead=3)
    w.stop()  # nobody runs the retried items, so the loser sees them queued (or sees the winner's counter)
    cmd = [sys.executable, "-m", "genqueue", "runs", "retry-failed", run_id]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [(p.wait(60), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 4], results
    assert queued_ids(conn, settings) == ids and store.count() == 0
    assert conn.hget(run_key(run_id), "retries") == b"1"
    workers()
    run_reaches(conn, settings, run_id, "completed", finished=3)


def dead_letter(conn, store, settings, job_id):
    """What the worker's dead-letter transaction leaves: no job hash, not queued, a DLQ entry."""
    conn.lrem(f"rq:queue:{settings.queue}", 0, job_id)
    for lane in conn.scan_iter(match=keys.fair(settings.queue) + "lane:*"):  # or waiting in its fair lane
        for entry in conn.lrange(lane, 0, -1):
            if entry.decode().endswith("|" + job_id):
                conn.lrem(lane, 0, entry)
                conn.hincrby(keys.fair(settings.queue) + "n", "*", -1)
    conn.delete(f"rq:job:{job_id}")
    store.add(make_entry(job_id, queue=settings.queue, payload={"prompt": f"p {job_id}"}))


def test_double_retry_failed_race_100_times_one_transaction_wins(conn, settings, store):
    ttl = settings.dlq_retention_s
    for trial in range(100):
        run_id = f"{settings.queue}-r{trial}"
        result = submit(conn, settings.queue, [{"prompt": "a"}, {"prompt": "b"}], run_id=run_id, ttl_s=ttl)
        for i in range(result.run.items):
            dead_letter(conn, store, settings, item_id(run_id, i))
        outcomes = race(*[lambda run_id=run_id: retry_failed(conn, run_id, ttl_s=ttl)] * 2, expected=(Conflict,))
        assert outcomes == ["Conflict", "ok"], (trial, outcomes)
    ids = queued_ids(conn, settings)
    assert len(ids) == 200 and len(set(ids)) == 200 and store.count() == 0


def test_show_watch_draws_progress_until_the_run_stops(conn, settings, workers, env, tmp_path):
    run_id = f"{settings.queue}-watch"
    path = write_run(tmp_path, [{"prompt": f"p{i}", "simulate": ["sleep=0.3"]} for i in range(3)])
    assert run_cli(env, "runs", "submit", path, "--run-id", run_id).code == 0
    watcher = subprocess.Popen(
        [sys.executable, "-m", "genqueue", "runs", "show", run_id, "--watch", "--interval", "0.2", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: "queued 3" in _peek_stderr(watcher), message="the progress bar's first label")
    workers()
    out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    final = json.loads(out)
    assert final["status"] == "completed" and final["done"] == 3 and final["counts"] == {"finished": 3}


_seen: dict[int, str] = {}


def _peek_stderr(proc) -> str:
    """Non-blocking read of what a subprocess wrote to stderr so far."""
    import os
    import select

    fd = proc.stderr.fileno()
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 4096).decode(errors="replace")
        if not chunk:
            break
        _seen[proc.pid] = _seen.get(proc.pid, "") + chunk
    return _seen.get(proc.pid, "")
