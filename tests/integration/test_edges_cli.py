"""Readers never break on what they cannot read: `jobs show` and `dlq show` of a pickled job or of data
nested past every bound answer one line and exit 1, never a traceback."""

from __future__ import annotations

import json
import pickle
import zlib

from tests.dlq_helpers import make_entry
from tests.helpers import run_cli


def deep(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def one_line_failure(result, code: int = 1) -> str:
    assert result.code == code, (result.code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def test_jobs_show_of_a_pickled_or_too_deep_job_is_one_line(env, conn, queue_name):
    hashes = {
        f"{queue_name}-pickled": {"data": pickle.dumps(("os.system", None, ("true",), {})), "meta": pickle.dumps({})},
        f"{queue_name}-deep": {
            "data": zlib.compress(json.dumps(["some.task", None, [], {"data": deep(900)}]).encode()),
            "meta": b"{}",
        },
    }
    for job_id, fields in hashes.items():
        conn.hset(f"rq:job:{job_id}", mapping={"status": "queued", "origin": queue_name, **fields})
        for args in (("jobs", "show", job_id), ("jobs", "show", job_id, "--json")):
            assert "cannot be read" in one_line_failure(run_cli(env, *args))


def test_dlq_show_of_an_entry_nested_too_deeply_is_one_line(env, store, queue_name):
    job_id = f"{queue_name}-deep"
    entry = make_entry(job_id, queue=queue_name)
    entry["func"], entry["args"], entry["kwargs"] = "some.task", [], {"data": deep(900)}
    store.add(entry)
    assert store.exists(job_id)
    for args in (("dlq", "show", job_id), ("dlq", "show", job_id, "--json")):
        assert job_id in one_line_failure(run_cli(env, *args))


def test_numeric_settings_out_of_bounds_are_refused_at_start(env):
    from genqueue.settings import BOUNDS

    assert set(BOUNDS) >= {"GENQUEUE_DLQ_RETENTION", "GENQUEUE_BACKOFF_SCALE", "GENQUEUE_CONCURRENCY"}
    for name, raw in (("GENQUEUE_DLQ_RETENTION", "99999999999999999999"), ("GENQUEUE_BACKOFF_SCALE", "1e300")):
        result = run_cli(dict(env, **{name: raw}), "worker", "--burst")
        assert name in one_line_failure(result, code=2)


def test_dlq_import_checks_every_field_and_reports_each_bad_line(env, store, queue_name, tmp_path):
    import genqueue.jobs.enqueue  # noqa: F401 - registers the built-in task, as the CLI does

    good = make_entry(f"{queue_name}-ok", queue=queue_name)
    bad = {
        2: {"history": "abc"},
        3: {"options": {"timeout": "abc"}},
        4: {"options": {"timeout": 10**12}},
        5: {"job_id": "bad id with spaces"},
        6: {"kwargs": {"data": deep(300)}, "args": [], "func": "some.task"},
        7: {"retry_count": -1},
    }
    lines = [json.dumps(good)] + [
        json.dumps({**make_entry(f"{queue_name}-b{n}", queue=queue_name), **f}) for n, f in bad.items()
    ]
    path = tmp_path / "entries.jsonl"
    path.write_text("\n".join(lines) + "\n")
    err = one_line_failure(run_cli(env, "dlq", "import", str(path)), code=2)
    for number in bad:
        assert f"line {number}:" in err, err
    assert "line 1:" not in err and not store.exists(f"{queue_name}-ok")  # all or nothing
    assert run_cli(env, "dlq", "import", str(path), "--skip-bad").code == 0
    assert store.exists(f"{queue_name}-ok") and not any(store.exists(f"{queue_name}-b{n}") for n in bad)


def test_dlq_retry_of_a_corrupt_stored_entry_is_one_line(env, store, queue_name):
    job_id = f"{queue_name}-corrupt"
    store.add({**make_entry(job_id, queue=queue_name), "options": {"timeout": "abc"}})
    assert "options.timeout" in one_line_failure(run_cli(env, "dlq", "retry", job_id))
    assert store.exists(job_id)


def test_dlq_list_with_an_entry_nested_too_deeply_still_lists(env, store, queue_name):
    job_id = f"{queue_name}-deep-listed"
    entry = make_entry(job_id, queue=queue_name)
    entry["func"], entry["args"], entry["kwargs"] = "some.task", [], {"data": deep(900)}
    store.add(entry)
    r = run_cli(env, "dlq", "list", "--json")
    assert r.code == 0 and [e["job_id"] for e in r.json()["entries"]] == [job_id], r.stderr[-500:]
    assert run_cli(env, "dlq", "list").code == 0


def test_jobs_retry_of_a_pickled_job_is_one_line(env, conn, queue_name):
    job_id = f"{queue_name}-pickled-retry"
    fields = {"data": pickle.dumps(("os.system", None, ("true",), {})), "meta": pickle.dumps({})}
    conn.hset(f"rq:job:{job_id}", mapping={"status": "failed", "origin": queue_name, **fields})
    result = run_cli(env, "jobs", "retry", job_id)
    assert result.code != 0 and "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
