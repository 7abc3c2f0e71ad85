"""The DLQ store against the real server: Lua writes, TTLs, retention, cap, corruption."""

from __future__ import annotations

import time

import pytest

from genqueue.dlq.store import DLQStore
from genqueue.errors import NotFound
from tests.dlq_helpers import make_entry
from tests.helpers import run_cli


def test_every_entry_gets_the_retention_ttl(conn, settings, store):
    for i in range(50):
        store.add(make_entry(f"t{i}", queue=settings.queue))
    ttls = [store.ttl(f"t{i}") for i in range(50)]
    assert all(store.retention_s - 5 < t <= store.retention_s for t in ttls), ttls
    assert store.count() == 50 and store.stats_counters()["dead_lettered"] == 50


def test_members_past_retention_are_pruned_and_counted(conn, settings):
    written_long_ago = DLQStore(conn, settings.queue, retention_s=3600)  # as if time had passed since
    store = DLQStore(conn, settings.queue, retention_s=100)
    old = time.time() - 500
    for i in range(3):
        written_long_ago.add(make_entry(f"old{i}", failed_at=old, kind="TIMEOUT"))
    assert store.count() == 3
    reply = store.add(make_entry("new", kind="TIMEOUT"))  # the write prunes by score
    assert [int(x) for x in reply] == [0, 3, 0]
    assert store.count() == 1 and store.stats_counters()["expired"] == 3
    assert conn.zrange(store.keys.index("kind", "TIMEOUT"), 0, -1) == [b"new"]
    # maintenance prunes indexes no write touched
    written_long_ago.add(make_entry("old-user", failed_at=old, user="lonely", kind="UNKNOWN"))
    assert store.prune() == 1
    assert conn.zcard(store.keys.index("user", "lonely")) == 0
    assert store.stats_counters()["expired"] == 4


def test_the_size_cap_evicts_oldest_first_with_their_index_members(conn, settings):
    store = DLQStore(conn, settings.queue, retention_s=3600, cap=5)
    now = time.time()
    for i in range(8):
        store.add(make_entry(f"c{i}", failed_at=now - 100 + i, kind="RATE_LIMITED"))
    assert store.count() == 5 and store.stats_counters()["evicted"] == 3
    assert [m.decode() for m in conn.zrange(store.keys.all, 0, -1)] == [f"c{i}" for i in range(3, 8)]
    assert not any(store.exists(f"c{i}") for i in range(3))
    assert conn.zcard(store.keys.index("kind", "RATE_LIMITED")) == 5


def test_delete_removes_entry_and_every_index_member_in_one_call(conn, settings, store):
    store.add(make_entry("d0", queue=settings.queue, user="ua"))
    store.add(make_entry("d1", queue=settings.queue, user="ub", kind="TIMEOUT"))
    deleted = store.delete("d1")
    assert deleted["job_id"] == "d1" and not store.exists("d1")
    assert conn.zrange(store.keys.all, 0, -1) == [b"d0"]
    assert conn.zcard(store.keys.index("kind", "TIMEOUT")) == 0 and conn.zcard(store.keys.index("user", "ub")) == 0
    assert conn.zrange(store.keys.index("user", "ua"), 0, -1) == [b"d0"]
    with pytest.raises(NotFound):
        store.delete("d1")
    conn.set(store.keys.entry("bad"), b"{not json", ex=60)
    conn.zadd(store.keys.all, {"bad": 1.0})
    assert store.delete("bad") is None and store.count() == 1  # corrupt: entry and `all` member go


def test_replacing_an_entry_moves_its_index_members(conn, settings, store):
    store.add(make_entry("r1", kind="TIMEOUT"))
    reply = store.add(make_entry("r1", kind="PERMANENT", reason="non_retryable"))
    assert int(reply[0]) == 1
    assert conn.zcard(store.keys.index("kind", "TIMEOUT")) == 0
    assert conn.zcard(store.keys.index("kind", "PERMANENT")) == 1 and store.count() == 1


def test_corrupt_entry_list_warns_and_show_fails_in_one_line(conn, settings, store, env):
    store.add(make_entry("fine", queue=settings.queue))
    store.add(make_entry("bad", queue=settings.queue))
    conn.set(store.keys.entry("bad"), b"{definitely not json", keepttl=True)
    listed = run_cli(env, "dlq", "list", "--json")
    assert listed.code == 0 and [e["job_id"] for e in listed.json()["entries"]] == ["fine"]
    assert "skipped corrupt DLQ entry bad" in listed.stderr
    shown = run_cli(env, "dlq", "show", "bad")
    assert shown.code == 1 and shown.stderr.count("\n") == 1 and "corrupt" in shown.stderr
    assert "Traceback" not in shown.stderr
