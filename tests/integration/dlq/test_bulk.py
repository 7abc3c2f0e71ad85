"""Bulk replay/purge, stats, export/import, recover, audit and the scheduler, through the CLI."""

from __future__ import annotations

import http.server
import json
import threading

from rq import Queue
from rq.serializers import JSONSerializer

from genqueue.tenants.fair import waiting, waiting_ids
from tests.dlq_helpers import make_entry, plain_rq_burst
from tests.helpers import run_cli


def fill(store, queue, n=30):
    """n entries; ids carry the queue name because RQ job ids are global across queues."""
    kinds = ["RATE_LIMITED", "TRANSIENT", "PERMANENT"]
    for i in range(n):
        store.add(
            make_entry(
                f"{queue}-b{i:03d}",
                queue=queue,
                kind=kinds[i % 3],
                user=f"u{i % 2}",
                reason="non_retryable" if i % 3 == 2 else "exhausted",
                payload={"prompt": "p", "user_id": f"u{i % 2}", "api_key": "sk-secret"},
            )
        )


def snapshot(conn, store):
    keys = sorted(conn.scan_iter(match=store.keys.prefix + "*"))
    return {k: conn.dump(k) for k in keys}, waiting(conn, [store.keys.queue])[store.keys.queue]


def test_dry_runs_change_nothing(conn, settings, store, env):
    fill(store, settings.queue)
    before = snapshot(conn, store)
    r = run_cli(env, "dlq", "retry", "--all", "--kind", "RATE_LIMITED", "--dry-run", "--json")
    assert r.code == 0 and r.json()["matching"] == 10 and r.json()["by_kind"] == {"RATE_LIMITED": 10}
    p = run_cli(env, "dlq", "purge", "--user", "u0", "--dry-run")
    assert p.code == 0 and "would purge 15" in p.stdout
    assert snapshot(conn, store) == before


def test_bulk_replay_by_filters_and_audit(conn, settings, store, env):
    fill(store, settings.queue)
    refused = run_cli(env, "dlq", "retry", "--all", "--kind", "RATE_LIMITED")  # no TTY, no --yes
    assert refused.code == 2 and store.count() == 30
    r = run_cli(env, "dlq", "retry", "--all", "--kind", "RATE_LIMITED", "--user", "u0", "--yes", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["done"] == 5
    queued = sorted(waiting_ids(conn, settings.queue))
    assert queued == [f"{settings.queue}-b{i:03d}" for i in range(30) if i % 3 == 0 and i % 2 == 0]
    assert store.count() == 25
    rated = run_cli(env, "dlq", "retry", "--all", "--kind", "RATE_LIMITED", "--rate", "100", "--yes", "--json")
    assert rated.json()["done"] == 5 and store.count() == 20
    audit = run_cli(env, "audit", "--json").json()["entries"]
    mine = [a for a in audit if a["queue"] == settings.queue]
    assert [a["action"] for a in mine[:2]] == ["bulk_retry", "bulk_retry"]
    assert mine[1]["filters"] == {"kind": "RATE_LIMITED", "user": "u0"} and mine[1]["counts"]["replayed"] == 5
    assert "@" in mine[0]["who"]


def test_bulk_replay_and_purge_reach_every_entry_past_one_batch(conn, settings, store, env):
    """More entries than one bulk batch (200): each batch deletes what it read, nothing may be skipped."""
    fill(store, settings.queue, n=450)
    r = run_cli(env, "dlq", "retry", "--all", "--kind", "TRANSIENT", "--yes", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["done"] == 150 and store.count() == 300
    assert waiting(conn, [settings.queue])[settings.queue] == 150
    purged = run_cli(env, "dlq", "purge", "--yes", "--json")
    assert purged.code == 0 and purged.json()["done"] == 300 and store.count() == 0


def test_stats(conn, settings, store, env):
    fill(store, settings.queue)
    s = run_cli(env, "dlq", "stats", "--json").json()
    assert s["total"] == 30 and s["by_kind"] == {"RATE_LIMITED": 10, "TRANSIENT": 10, "PERMANENT": 10}
    assert s["by_reason"] == {"exhausted": 20, "non_retryable": 10} and s["by_user"] == {"u0": 15, "u1": 15}
    assert len(s["hourly_last_24h"]) == 24 and s["hourly_last_24h"][-1] == 30 and len(s["sparkline"]) == 24
    assert s["top_fingerprints"][0]["count"] == 30 and "ProviderError" in s["top_fingerprints"][0]["sample"]
    filtered = run_cli(env, "dlq", "stats", "--kind", "PERMANENT", "--json").json()
    assert filtered["total"] == 10 and filtered["by_kind"] == {"PERMANENT": 10}
    assert [f["count"] for f in filtered["top_fingerprints"]] == [10] and filtered["counters"] is None
    assert "for the whole queue only" in run_cli(env, "dlq", "stats", "--kind", "PERMANENT").stdout
    assert "dead-lettered 30" in run_cli(env, "dlq", "stats").stdout


def test_export_purge_import_round_trip_byte_for_byte(conn, settings, store, env, tmp_path):
    fill(store, settings.queue)
    raw_before = {k: store.get_raw(k) for k in (f"{settings.queue}-b{i:03d}" for i in range(30))}
    out = tmp_path / "dlq.jsonl"
    assert run_cli(env, "dlq", "export", "--include-secrets", "-o", str(out)).code == 0
    masked = run_cli(env, "dlq", "export").stdout
    assert "sk-secret" not in masked and masked.count("\n") == 30 and "sk-secret" in out.read_text()
    assert run_cli(env, "dlq", "purge", "--yes").code == 0 and store.count() == 0
    again = run_cli(env, "dlq", "import", str(out), "--json")
    assert again.code == 0, again.stderr
    assert again.json()["imported"] == 30
    assert {k: store.get_raw(k) for k in raw_before} == raw_before
    assert all(0 < store.ttl(k) <= store.retention_s for k in raw_before)
    assert conn.zcard(store.keys.index("kind", "PERMANENT")) == 10
    dup = run_cli(env, "dlq", "import", str(out))
    assert dup.code == 4 and "already in" in dup.stderr


def test_import_rejects_malformed_files_whole(conn, settings, store, env, tmp_path):
    good = json.dumps(make_entry("g1", queue=settings.queue))
    f = tmp_path / "mixed.jsonl"
    f.write_text(good + "\n{oops\n" + json.dumps(make_entry("g2", queue=settings.queue)) + "\n")
    r = run_cli(env, "dlq", "import", str(f))
    assert r.code == 2 and "line 2" in r.stderr and r.stderr.count("\n") == 1
    assert store.count() == 0
    skipped = run_cli(env, "dlq", "import", str(f), "--skip-bad")
    assert skipped.code == 0 and "skipped line 2" in skipped.stderr and store.count() == 2


def test_import_checks_every_field_it_writes_before_writing_any(conn, settings, store, env, tmp_path):
    """Fields import reads later (failed_at, expires_at, error for the indexes) are checked up front, so a
    bad one is a numbered line in a one-line error, not a traceback after earlier batches were written."""
    good = make_entry("ok1", queue=settings.queue)
    bad = [
        {**good, "job_id": "b1", "failed_at": 12345},
        {**good, "job_id": "b2", "expires_at": "soon"},
        {**good, "job_id": "b3", "error": "boom"},
    ]
    f = tmp_path / "fields.jsonl"
    f.write_text("\n".join(json.dumps(e) for e in [good, *bad]) + "\n")
    r = run_cli(env, "dlq", "import", str(f))
    assert r.code == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert all(f"line {n}" in r.stderr for n in (2, 3, 4)) and store.count() == 0


def test_recover_moves_plain_rq_failures_idempotently(conn, settings, store, env):
    q = Queue(settings.queue, connection=conn, serializer=JSONSerializer)
    q.enqueue("genqueue.jobs.generate", {"prompt": "p", "simulate": ["500"]}, job_id="plain-1")
    plain_rq_burst(q)
    assert conn.zscore(f"rq:failed:{settings.queue}", "plain-1") is not None
    r = run_cli(env, "dlq", "recover", "--json")
    assert r.code == 0 and r.json()["from_failed_registry"] == 1
    entry = store.get("plain-1")
    assert entry["reason"] == "recovered" and "HTTP 500" in entry["error"]["message"]
    listed = run_cli(env, "dlq", "list", "--reason", "recovered", "--json")
    assert listed.code == 0 and [e["reason"] for e in listed.json()["entries"]] == ["recovered"]
    assert conn.zscore(f"rq:failed:{settings.queue}", "plain-1") is None
    assert run_cli(env, "dlq", "recover", "--json").json()["from_failed_registry"] == 0


class Hook(http.server.BaseHTTPRequestHandler):
    bodies: list = []

    def do_POST(self):
        Hook.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_scheduler_alerts_webhook_and_auto_retry(conn, settings, store, env):
    fill(store, settings.queue, n=9)
    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run_env = dict(
            env,
            GENQUEUE_DLQ_ALERT_SIZE="5",
            GENQUEUE_AUTO_RETRY="RATE_LIMITED=0s",
            GENQUEUE_DLQ_WEBHOOK=f"http://127.0.0.1:{server.server_port}/hook",
        )
        r = run_cli(run_env, "scheduler", "--once", "--json")
        assert r.code == 0, r.stderr
        report = r.json()[settings.queue]
        assert report["auto_retried"] == 3 and report["alerts"][0]["alert"] == "dlq_size"
        assert Hook.bodies and Hook.bodies[-1]["queue"] == settings.queue and Hook.bodies[-1]["size"] == 9
    finally:
        server.shutdown()
    assert store.count() == 6
    broken = dict(env, GENQUEUE_DLQ_ALERT_RATE="0", GENQUEUE_DLQ_WEBHOOK="http://127.0.0.1:1/nothing-here")
    r = run_cli(broken, "scheduler", "--once")
    assert r.code == 0 and "dlq.webhook_failed" in r.stderr


def test_bulk_replay_writes_the_job_rqs_own_enqueue_would(conn, settings, store):
    """replay.job_hash against RQ: the bulk path and the one-entry path (RQ's enqueue_job) leave the same
    job, field by field (timestamps aside; `data` compared deserialized: the bulk path does not zlib it)."""
    import zlib

    from rq.job import Job

    from genqueue.backend.queues import SERIALIZER
    from genqueue.dlq.bulk import bulk_replay
    from genqueue.dlq.replay import replay
    from genqueue.dlq.store import Filters

    q = settings.queue
    for job_id in (f"{q}-one", f"{q}-bulk"):
        store.add(make_entry(job_id, queue=q, payload={"prompt": "same", "n": 2**70}, replays=1))
    replay(store, f"{q}-one")
    assert bulk_replay(store, Filters()).done == 1
    one, bulk = conn.hgetall(f"rq:job:{q}-one"), conn.hgetall(f"rq:job:{q}-bulk")
    assert set(one) == set(bulk)
    for field in set(one) - {b"created_at", b"enqueued_at", b"data", b"meta"}:
        assert one[field] == bulk[field], field
    assert json.loads(zlib.decompress(one[b"data"])) == json.loads(bulk[b"data"])
    meta_one, meta_bulk = json.loads(one[b"meta"]), json.loads(bulk[b"meta"])
    assert meta_one["genqueue"].pop("replayed_from").startswith(f"{q}-one@")
    assert meta_bulk["genqueue"].pop("replayed_from").startswith(f"{q}-bulk@")
    assert meta_one == meta_bulk and meta_bulk["genqueue"]["replays"] == 2
    job = Job.fetch(f"{q}-bulk", connection=conn, serializer=SERIALIZER)
    assert job.get_status() == "queued" and job.func_name == "genqueue.jobs.generate"
    assert list(job.args) == [{"prompt": "same", "n": 2**70}] and job.enqueued_at is not None
    assert conn.lrange(f"rq:queue:{q}", 0, -1) == [f"{q}-one".encode(), f"{q}-bulk".encode()]
