"""The pure half of the /metrics counters: buckets, fields per decision, parsing the hash back."""

from __future__ import annotations

from genqueue.backend.counters import (
    BUCKETS,
    bucket,
    cumulative,
    fields_for_enqueued,
    fields_for_failure,
    fields_for_success,
    parse,
)


def test_buckets_are_upper_bounds_and_overflow_is_inf():
    assert bucket(0.0) == "0.1" and bucket(0.1) == "0.1" and bucket(0.11) == "0.5"
    assert bucket(600.0) == "600.0" and bucket(601) == "+Inf"


def test_fields_per_decision():
    assert fields_for_enqueued(3) == {"enqueued": 3} and fields_for_enqueued(0) == {}
    assert fields_for_success(None) == {"duration:finished:+Inf": 1}
    assert fields_for_success(0.3) == {"duration:finished:0.5": 1, "duration_sum:finished": 0.3}
    assert fields_for_failure("TRANSIENT", True, None, 2.0) == {
        "retried:TRANSIENT": 1,
        "duration:failed:2.5": 1,
        "duration_sum:failed": 2.0,
    }
    assert fields_for_failure("PERMANENT", False, "non_retryable", -1) == {
        "dead:PERMANENT:non_retryable": 1,
        "duration:failed:+Inf": 1,
    }
    assert fields_for_success(None, "app.tasks:img")["task:finished:app.tasks:img"] == 1
    assert fields_for_failure("TRANSIENT", False, "exhausted", 1, "t")["task:dead:t"] == 1
    assert parse({b"task:retried:app.tasks:img": b"4"})["tasks"] == {("app.tasks:img", "retried"): 4}


def test_parse_derives_finished_failed_and_counts():
    raw = {
        b"retried:CRASH": b"2",
        b"dead:CRASH:crash_loop": b"1",
        b"dead:TIMEOUT:exhausted": b"1",
        b"enqueued": b"7",
        b"duration:finished:0.5": b"2",
        b"duration:finished:+Inf": b"1",
        b"duration_sum:finished": b"700.25",
    }
    data = parse(raw)
    assert data["enqueued"] == 7 and data["finished"] == 3 and data["failed"] == {"CRASH": 3, "TIMEOUT": 1}
    assert data["dead"] == {("CRASH", "crash_loop"): 1, ("TIMEOUT", "exhausted"): 1}
    h = data["duration"]["finished"]
    assert h["count"] == 3 and h["sum"] == 700.25
    buckets = cumulative(h["buckets"])
    assert len(buckets) == len(BUCKETS) + 1 and buckets[0] == ("0.1", 0) and buckets[1] == ("0.5", 2)
    assert buckets[-1] == ("+Inf", 3)
