"""PatientRetry: waits out an outage up to the limit, one log line each way, never a fresh minute per command."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import WatchError
from structlog.testing import capture_logs

from genqueue.backend.outage import OutageClock, OutageTooLong, PatientRetry


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


def make(outage_s: float = 10.0):
    t = FakeTime()
    clock = OutageClock(now=t.monotonic)
    return t, clock, PatientRetry(outage_s, clock=clock, sleep=t.sleep)


def flaky(failures: int, t: FakeTime | None = None, cost_s: float = 0.0):
    calls = {"n": 0}

    def do():
        calls["n"] += 1
        if t is not None:
            t.now += cost_s
        if calls["n"] <= failures:
            raise RedisConnectionError("Connection refused")
        return "PONG"

    return do, calls


def test_a_short_outage_is_waited_out_with_one_warning_and_one_info_line():
    t, clock, retry = make()
    do, calls = flaky(5)
    with capture_logs() as logs:
        assert retry.call_with_retry(do, lambda _e: None) == "PONG"
    assert calls["n"] == 6
    assert [e["event"] for e in logs] == ["redis.unreachable", "redis.reconnected"]
    assert clock.started is None and clock.recently_back(1.0)


def test_past_the_limit_the_command_raises_outage_too_long():
    t, clock, retry = make(outage_s=3.0)
    do, calls = flaky(10_000)
    with pytest.raises(OutageTooLong) as info:
        retry.call_with_retry(do, lambda _e: None)
    assert info.value.code == 5 and info.value.seconds >= 3.0
    assert "GENQUEUE_REDIS_OUTAGE_S" in str(info.value) and "Connection refused" in str(info.value)
    assert t.now - 100.0 == pytest.approx(3.0, abs=0.01), "the last sleep is cut to the limit"


def test_the_outage_is_per_process_not_per_command():
    t, clock, retry = make(outage_s=5.0)
    first, _ = flaky(10_000)
    with pytest.raises(OutageTooLong):
        retry.call_with_retry(first, lambda _e: None)
    later, _ = flaky(10_000)  # a command issued after the limit gets no fresh minute
    with pytest.raises(OutageTooLong):
        retry.call_with_retry(later, lambda _e: None)
    assert t.now - 100.0 < 5.5


def test_backoff_is_capped():
    t, clock, retry = make(outage_s=1000.0)
    sleeps = []
    retry._sleep = lambda s: (sleeps.append(s), t.sleep(s))
    do, _ = flaky(40)
    retry.call_with_retry(do, lambda _e: None)
    assert max(sleeps) <= 2.0 and len(sleeps) == 40


def test_a_watch_error_from_the_failure_callback_propagates():
    _, clock, retry = make()
    do, calls = flaky(1)

    def fail(_error, _count):
        raise WatchError("A ConnectionError occurred while watching one or more keys")

    with pytest.raises(WatchError):
        retry.call_with_retry(do, fail, with_failure_count=True)
    assert calls["n"] == 1


def test_a_connect_that_returns_at_once_does_not_end_the_outage():
    _, clock, retry = make()
    clock.failed(RedisConnectionError("gone"))

    class Connection:
        def connect(self):
            return retry.call_with_retry(lambda: None, lambda _e: None)

    Connection().connect()  # redis-py's connect() with a socket still held: no round trip, no news
    assert clock.started is not None
    retry.call_with_retry(lambda: "PONG", lambda _e: None)
    assert clock.started is None


def test_deepcopy_keeps_the_shared_clock():
    import copy

    _, clock, retry = make()
    assert copy.deepcopy(retry).clock is clock
