"""The figures of a filtered stats answer, from the matching rows alone."""

from __future__ import annotations

from genqueue.dlq.stats import HOUR_S, Row, tally

NOW = 1_000_000.0


def row(age_s: float, kind: str, fp: str, sample: str) -> Row:
    return Row(NOW - age_s, {"kind": kind, "reason": "exhausted", "fingerprint": fp}, sample)


def test_every_figure_counts_only_the_rows_given():
    rows = [
        row(10, "TRANSIENT", "a", "old a"),
        row(5, "TRANSIENT", "a", "new a"),
        row(2 * HOUR_S, "PERMANENT", "b", "b"),
        row(30 * HOUR_S, "TRANSIENT", "c", "c"),
    ]
    t = tally(iter(rows), NOW)  # one pass: a generator will do
    assert t["total"] == 4 and t["by"]["kind"] == {"TRANSIENT": 3, "PERMANENT": 1} and t["by"]["user"] == {}
    assert t["top"] == [
        {"fingerprint": "a", "count": 2, "sample": "new a"},
        {"fingerprint": "b", "count": 1, "sample": "b"},
        {"fingerprint": "c", "count": 1, "sample": "c"},
    ]
    assert t["hourly"][-1] == 2 and t["hourly"][-3] == 1 and sum(t["hourly"]) == 3  # 30 h ago is outside 24 h
    assert t["oldest"] == NOW - 30 * HOUR_S


def test_no_rows_no_figures():
    assert tally([], NOW) == {
        "total": 0,
        "by": {"kind": {}, "func": {}, "user": {}, "reason": {}},
        "hourly": [0] * 24,
        "oldest": None,
        "top": [],
    }
