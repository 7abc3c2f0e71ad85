"""genqueue.current().progress: checked at the call, throttled to a few writes a second, the last value kept."""

from __future__ import annotations

import json

import pytest

from genqueue.tasks.context import Live, TaskContext


class Recorder:
    """A stand-in connection: register_script gives a callable that records each progress write."""

    def __init__(self) -> None:
        self.writes: list[dict] = []

    def register_script(self, source):
        recorder = self

        class Script:
            registered_client = recorder

            def __call__(self, keys=None, args=None, client=None):
                recorder.writes.append(json.loads(args[1]))
                return 1

        return Script()


def context(conn) -> TaskContext:
    return TaskContext("job-p", "t", "q", 1, 0, None, None, live=Live(conn))


def test_a_burst_of_calls_writes_a_few_times_and_always_the_last_value():
    conn = Recorder()
    ctx = context(conn)
    for i in range(1, 101):
        ctx.progress(i / 100, f"step {i}/100", {"i": i})
    assert 1 <= len(conn.writes) <= 3  # a burst within one throttle interval: the first call, maybe one more
    ctx.flush_progress()  # what the worker does when the task returns
    last = conn.writes[-1]
    assert (last["fraction"], last["message"], last["data"]) == (1.0, "step 100/100", {"i": 100})
    ctx.flush_progress()
    assert conn.writes[-1] is last and len([w for w in conn.writes if w["fraction"] == 1.0]) == 1  # once


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((1.5,), "from 0 to 1"),
        ((-0.1,), "from 0 to 1"),
        ((float("nan"),), "from 0 to 1"),
        ((True,), "from 0 to 1"),
        ((None, 3), "message must be a string"),
        ((None, None, {"x": object()}), "must be JSON"),
        ((None, None, "x" * 20_000), "larger than"),
    ],
)
def test_bad_progress_is_refused_at_the_call(args, error):
    conn = Recorder()
    with pytest.raises(ValueError, match=error):
        context(conn).progress(*args)
    assert conn.writes == []


def test_outside_a_worker_progress_and_cancelled_do_nothing():
    ctx = TaskContext("job-p", "t", "q", 1, 0, None, None)
    ctx.progress(0.5, "half")
    ctx.flush_progress()
    assert ctx.cancelled is False
