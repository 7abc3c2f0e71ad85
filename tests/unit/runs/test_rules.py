"""The pure rules of runs and manual retries: ids, the run file, status derivation, eligibility, history."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rq.job import JOB_ID_PATTERN

from genqueue.errors import Conflict, InvalidId, InvalidInput
from genqueue.jobs.manual_retry import (
    attempts_made,
    charged_retries,
    checked_job_id,
    last_failure,
    manual_retry_record,
    with_fresh_budget,
)
from genqueue.runs.rules import (
    FailedItem,
    NothingToRetry,
    RetryClass,
    RetryLimitReached,
    check_limit,
    check_run_id,
    checked_plan,
    default_run_id,
    item_id,
    item_status,
    parse_run_file,
    plan_retry,
    retry_class,
    run_digest,
    run_status,
)


# -- ids -------------------------------------------------------------------------------------------------------
def test_item_ids_are_deterministic_and_valid_rq_job_ids():
    assert item_id("batch-42", 0) == "batch-42-item-0"
    assert JOB_ID_PATTERN.fullmatch(item_id(check_run_id("A_b-9"), 12345))


@given(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True),
    st.integers(0, 10**6),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True),
    st.integers(0, 10**6),
)
def test_no_two_run_items_share_an_id(run_a, i, run_b, j):
    if (run_a, i) != (run_b, j):
        assert item_id(run_a, i) != item_id(run_b, j)


@pytest.mark.parametrize("bad", ["", "a:b", "a b", "-lead", "a.b", "x" * 101, "ünï"])
def test_bad_run_ids_are_invalid_input(bad):
    with pytest.raises(InvalidInput):
        check_run_id(bad)


@pytest.mark.parametrize("bad", ["a:b", "a.b", "a b", ""])
def test_job_ids_rq_would_reject_are_invalid_ids(bad):
    with pytest.raises(InvalidId) as info:
        checked_job_id(bad)
    assert info.value.exit_code == 2 and info.value.code == "INVALID_ID"


@pytest.mark.parametrize("limit", [0, 11, -1])
def test_limit_outside_1_to_10(limit):
    with pytest.raises(InvalidInput):
        check_limit(limit)
    assert check_limit(1) == 1 and check_limit(10) == 10


# -- the run file ----------------------------------------------------------------------------------------------
def test_run_file_all_or_nothing_names_every_bad_line():
    lines = [
        '{"prompt": "a"}',
        "{bad",
        "",
        "[1]",
        '{"prompt": ""}',
        '{"prompt": "b", "simulate": ["boom"]}',
        '{"prompt": "c"}',
    ]
    with pytest.raises(InvalidInput) as info:
        parse_run_file(lines)
    message = str(info.value)
    for n in (2, 4, 5, 6):
        assert f"line {n}:" in message
    assert "line 1:" not in message and "line 3:" not in message and "line 7:" not in message
    assert message.startswith("4 bad line(s)") and "nothing enqueued" in message


def test_run_file_lines_json_refuses_plainly_are_bad_lines_too():
    with pytest.raises(InvalidInput, match=r"line 2: not valid JSON.*line 3: not valid JSON"):
        parse_run_file(['{"prompt": "a"}', '{"prompt": "x", "n": ' + "9" * 5000 + "}", "[" * 100000])


def test_run_file_skips_blank_lines_and_keeps_order():
    payloads = parse_run_file(['{"prompt": "a"}', "   ", '{"prompt": "b", "user_id": 7}', ""])
    assert [p["prompt"] for p in payloads] == ["a", "b"]


def test_empty_run_file_is_invalid():
    with pytest.raises(InvalidInput, match="no items"):
        parse_run_file(["", "  "])


def test_digest_is_stable_and_covers_items_and_options():
    a = [{"prompt": "x", "params": {"b": 1, "a": 2}}]
    same = [{"params": {"a": 2, "b": 1}, "prompt": "x"}]
    assert run_digest(a, None) == run_digest(same, None)
    assert run_digest(a, None) != run_digest(a, 2)
    assert run_digest(a, None) != run_digest(a + a, None)
    assert default_run_id(run_digest(a, None)) == default_run_id(run_digest(same, None))
    check_run_id(default_run_id(run_digest(a, None)))


# -- status ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rq_status,has_history,in_dlq,expected",
    [
        ("queued", False, False, "queued"),
        ("started", True, False, "running"),
        ("scheduled", False, False, "scheduled"),
        ("scheduled", True, False, "retrying"),
        ("finished", True, False, "finished"),
        ("failed", False, False, "failed"),
        (None, False, True, "dead"),
        (None, False, False, "missing"),
    ],
)
def test_item_status(rq_status, has_history, in_dlq, expected):
    assert item_status(rq_status, has_history, in_dlq) == expected


@pytest.mark.parametrize(
    "counts,expected",
    [
        ({"finished": 3}, "completed"),
        ({"finished": 2, "dead": 1}, "partially_failed"),
        ({"dead": 2, "failed": 1}, "failed"),
        ({"finished": 2, "retrying": 1}, "running"),
        ({"dead": 2, "scheduled": 1}, "running"),
        ({"finished": 1, "running": 1}, "running"),
        ({"queued": 1}, "running"),
        ({"finished": 1, "missing": 1}, "partially_failed"),
    ],
)
def test_run_status(counts, expected):
    assert run_status(counts) == expected


# -- eligibility -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind,reason,expected",
    [
        ("CRASH", "crash_loop", RetryClass.FREE),
        ("CRASH", "recovered", RetryClass.FREE),
        ("UNKNOWN", "crash_loop", RetryClass.FREE),
        ("PERMANENT", "non_retryable", RetryClass.NEVER),
        ("PERMANENT", "recovered", RetryClass.NEVER),
        ("TRANSIENT", "non_retryable", RetryClass.NEVER),
        ("TRANSIENT", "exhausted", RetryClass.CHARGED),
        ("RATE_LIMITED", "exhausted", RetryClass.CHARGED),
        (None, None, RetryClass.CHARGED),
        (None, "corrupt_entry", RetryClass.NEVER),
    ],
)
def test_retry_class(kind, reason, expected):
    assert retry_class(kind, reason) is expected


def item(i, kind, reason, charged=0):
    return FailedItem(i, f"r-item-{i}", "dead", kind, reason, charged)


def test_plan_all_or_nothing_names_only_charged_items_over_the_limit():
    items = [
        item(0, "TRANSIENT", "exhausted", charged=1),
        item(1, "TRANSIENT", "exhausted", charged=0),
        item(2, "CRASH", "crash_loop", charged=5),
        item(3, "PERMANENT", "non_retryable"),
    ]
    plan = plan_retry(items, limit=1)
    assert [i.index for i in plan.over_limit] == [0]  # the crash item's old charges do not matter: it is free
    assert [i.index for i in plan.to_retry] == [0, 1, 2] and [i.index for i in plan.never] == [3]
    with pytest.raises(RetryLimitReached) as info:
        checked_plan("r", {"dead": 4}, items, 1)
    assert "r-item-0" in str(info.value) and "r-item-1" not in str(info.value) and info.value.exit_code == 4
    assert [i.index for i in checked_plan("r", {"dead": 4}, items, 2).to_retry] == [0, 1, 2]


@given(
    st.lists(
        st.tuples(st.sampled_from(["TRANSIENT", "CRASH", "PERMANENT", "UNKNOWN"]), st.integers(0, 12)), max_size=30
    ),
    st.integers(1, 10),
)
def test_plan_properties(rows, limit):
    items = [item(i, kind, "crash_loop" if kind == "CRASH" else "exhausted", c) for i, (kind, c) in enumerate(rows)]
    plan = plan_retry(items, limit)
    assert {i.index for i in plan.to_retry} | {i.index for i in plan.never} == set(range(len(items)))
    assert all(i.kind != "PERMANENT" for i in plan.to_retry)
    assert all(i.retry_class is RetryClass.CHARGED and i.charged_retries + 1 > limit for i in plan.over_limit)
    assert all(i.charged_retries + 1 <= limit for i in plan.charged if i not in plan.over_limit)


def test_checked_plan_refuses_running_and_nothing_to_retry():
    with pytest.raises(Conflict, match="running"):
        checked_plan("r", {"dead": 1, "queued": 1}, [item(0, "TRANSIENT", "exhausted")], 3)
    with pytest.raises(NothingToRetry, match="never retried") as info:
        checked_plan("r", {"finished": 1, "dead": 1}, [item(1, "PERMANENT", "non_retryable")], 3)
    assert info.value.exit_code == 1
    with pytest.raises(NothingToRetry, match="completed"):
        checked_plan("r", {"finished": 2}, [], 3)


# -- history records -------------------------------------------------------------------------------------------
def test_manual_retry_records_are_not_attempts_and_count_charges():
    history = [{"n": 1, "kind": "TRANSIENT", "action": "dead", "error": {"message": "HTTP 500"}}]
    meta = {"history": list(history), "retries": 4, "crashes": 2, "budget_from": 0}
    record = manual_retry_record(
        charged=True, via="jobs retry", previous_status="dead", kind="TRANSIENT", reason="exhausted"
    )
    with_fresh_budget(meta, record)
    assert meta["retries"] == 0 and meta["crashes"] == 0 and meta["budget_from"] == 2
    assert meta["history"][-1]["action"] == "manual_retry" and meta["history"][-1]["error"]["message"] is None
    assert attempts_made(meta["history"]) == 1 and charged_retries(meta["history"]) == 1
    assert last_failure(meta["history"])["kind"] == "TRANSIENT"
    free = manual_retry_record(
        charged=False, via="runs retry-failed", previous_status="dead", kind="CRASH", reason="crash_loop", run_retry=2
    )
    assert charged_retries(meta["history"] + [free]) == 1 and free["run_retry"] == 2
