"""Pure store logic on fakeredis (no Lua): reads, paging, filters, deletes, merge patches."""

from __future__ import annotations

import fakeredis
import pytest

from genqueue.dlq.entry import encode, index_values
from genqueue.dlq.replay import merge_patch
from genqueue.dlq.stats import sparkline
from genqueue.dlq.store import DLQStore, Filters
from genqueue.dlq.transfer import parse_lines
from genqueue.errors import CorruptEntry, InvalidInput, NotFound
from tests.dlq_helpers import make_entry


@pytest.fixture
def store():
    conn = fakeredis.FakeRedis()
    s = DLQStore.__new__(DLQStore)  # skip script registration: these tests never call add()
    from genqueue.backend.keys import DLQKeys

    s.connection, s.keys, s.retention_s, s.cap = conn, DLQKeys("q"), 3600, 100
    return s


def seed(store, entry):
    """What add.lua writes, without Lua."""
    c = store.connection
    c.set(store.keys.entry(entry["job_id"]), encode(entry), ex=store.retention_s)
    score = entry["_score"]
    c.zadd(store.keys.all, {entry["job_id"]: score})
    for f, v in index_values(entry).items():
        c.zadd(store.keys.index(f, v), {entry["job_id"]: score})


def entries(store, n=5, **kw):
    out = []
    for i in range(n):
        e = make_entry(f"j{i}", failed_at=1000.0 + i, **kw)
        e["_score"] = 1000.0 + i
        seed(store, e)
        out.append(e)
    return out


def test_get_and_not_found(store):
    entries(store, 1)
    assert store.get("j0")["job_id"] == "j0"
    with pytest.raises(NotFound):
        store.get("nope")


def test_pages_newest_first_with_a_cursor(store):
    entries(store, 5)
    first = store.page(limit=2)
    assert [e["job_id"] for e in first.entries] == ["j4", "j3"] and first.total == 5
    second = store.page(limit=2, cursor=first.next_cursor)
    assert [e["job_id"] for e in second.entries] == ["j2", "j1"]
    third = store.page(limit=2, cursor=second.next_cursor)
    assert [e["job_id"] for e in third.entries] == ["j0"] and third.next_cursor is None


def test_walk_while_deleting_visits_every_member_once(store):
    """A bulk replay deletes what it has read while it walks: nothing may be skipped (offset paging did)."""
    for i in range(23):
        seed(store, {**make_entry(f"w{i:02d}"), "_score": 1000.0 + i // 4})  # runs of 4 equal scores
    seen = []
    for job_id, _ in store._walk(store.keys.all, "+inf", "-inf", None, batch=3):
        seen.append(job_id)
        store.connection.zrem(store.keys.all, job_id)
    assert sorted(seen) == [f"w{i:02d}" for i in range(23)] and len(seen) == 23


def test_cursor_inside_a_run_of_equal_scores_resumes_after_it(store):
    for i in range(6):
        seed(store, {**make_entry(f"t{i}"), "_score": 500.0})
    pages, cursor = [], None
    while True:
        page = store.page(limit=4, cursor=cursor)
        pages.append([e["job_id"] for e in page.entries])
        if not (cursor := page.next_cursor):
            break
    assert pages == [["t5", "t4", "t3", "t2"], ["t1", "t0"]]


@pytest.mark.parametrize("cursor", ["garbage", "12.5", "nan:x", "abc:j1", ":j1"])
def test_malformed_cursor_is_invalid_input(store, cursor):
    with pytest.raises(InvalidInput):
        store.page(cursor=cursor)


def test_filters_combine_as_and(store):
    entries(store, 3, kind="TIMEOUT", user="a")
    for i, (kind, user) in enumerate([("TIMEOUT", "b"), ("PERMANENT", "a")], start=10):
        e = make_entry(f"x{i}", kind=kind, user=user, failed_at=2000.0 + i)
        e["_score"] = 2000.0 + i
        seed(store, e)
    got = store.page(Filters(kind="TIMEOUT", user="a"))
    assert sorted(e["job_id"] for e in got.entries) == ["j0", "j1", "j2"]
    assert [e["job_id"] for e in store.page(Filters(since=2005, until=2010.5)).entries] == ["x10"]


def test_corrupt_entry_is_skipped_by_page_and_named_by_get(store):
    entries(store, 2)
    store.connection.set(store.keys.entry("j0"), b"{broken")
    page = store.page()
    assert [e["job_id"] for e in page.entries] == ["j1"] and page.skipped == ["j0"]
    with pytest.raises(CorruptEntry, match="j0"):
        store.get("j0")


def test_merge_patch_is_rfc7386():
    assert merge_patch({"a": 1, "p": {"x": 1, "y": 2}}, {"p": {"y": None, "z": 3}, "b": [1]}) == {
        "a": 1,
        "p": {"x": 1, "z": 3},
        "b": [1],
    }


def test_sparkline_scales_to_the_peak():
    assert sparkline([0, 0, 4, 8]) == "▁▁▅█" and sparkline([0, 0]) == "▁▁"


def test_parse_lines_reports_line_numbers():
    good = encode(make_entry("ok1"))
    lines = [good + "\n", "{not json\n", "\n", '{"v": 1}\n', good]
    ok, bad = parse_lines(lines)
    assert [n for n, _, _ in ok] == [1, 5]
    assert [n for n, _ in bad] == [2, 4]
