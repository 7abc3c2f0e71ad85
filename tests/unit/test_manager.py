from genqueue.retry import Failure, RetryManager
from genqueue.retry.kinds import ErrorKind as K
from genqueue.retry.kinds import Reason
from genqueue.retry.manager import RetryState

mid = lambda: 0.5  # noqa: E731


def fail(kind, retry_after=None):
    return Failure(kind=kind, type="E", message="m", retry_after=retry_after)


def test_retry_then_exhaust_per_kind_maximum():
    m = RetryManager(rand=mid)
    d = m.decide(fail(K.TIMEOUT), RetryState(retries=2, history_kinds=("TIMEOUT", "TIMEOUT")))
    assert d.is_retry and d.charged and d.delay == 120.0  # third TIMEOUT: 30 · 2²
    d = m.decide(fail(K.TIMEOUT), RetryState(retries=3, history_kinds=("TIMEOUT",) * 3))
    assert d.action == "dead" and d.reason is Reason.EXHAUSTED and d.attempt == 4


def test_one_budget_across_kinds():
    m = RetryManager(rand=mid)
    d = m.decide(fail(K.UNKNOWN), RetryState(retries=3, history_kinds=("TRANSIENT",) * 3))
    assert d.reason is Reason.EXHAUSTED


def test_per_job_override_beats_kind_maximum():
    m = RetryManager(rand=mid)
    assert m.decide(fail(K.TRANSIENT), RetryState(retries=1, max_retries=1, history_kinds=("TRANSIENT",))).action == "dead"
    assert m.decide(fail(K.TIMEOUT), RetryState(retries=5, max_retries=9, history_kinds=("TIMEOUT",) * 5)).is_retry


def test_permanent_goes_straight_to_the_dlq():
    d = RetryManager().decide(fail(K.PERMANENT), RetryState())
    assert (d.action, d.reason, d.attempt) == ("dead", Reason.NON_RETRYABLE, 1)


def test_retry_after_raises_the_delay_but_not_past_the_cap():
    m = RetryManager(rand=mid)
    d = m.decide(fail(K.RATE_LIMITED, retry_after=42), RetryState())
    assert d.delay == 42 and not d.clipped
    d = m.decide(fail(K.RATE_LIMITED, retry_after=99_999), RetryState())
    assert d.delay == 3600 and d.clipped


def test_crashes_use_their_own_budget_and_are_not_charged():
    m = RetryManager(rand=mid)
    d = m.decide(fail(K.CRASH), RetryState(retries=5, crashes=2, max_retries=5))
    assert d.is_retry and not d.charged and d.delay == 4.0
    d = m.decide(fail(K.CRASH), RetryState(crashes=3))
    assert d.action == "dead" and d.reason is Reason.CRASH_LOOP


def test_scale_shrinks_delays():
    d = RetryManager(scale=0.04, rand=mid).decide(fail(K.TRANSIENT), RetryState())
    assert abs(d.delay - 0.2) < 1e-9


def test_failure_from_exception_carries_status_and_retry_after():
    from genqueue.providers.simulated import ProviderError

    f = RetryManager().failure_from_exception(ProviderError(429, "slow down", retry_after=3), "tb")
    assert (f.kind, f.status_code, f.retry_after, f.type, f.traceback) == (K.RATE_LIMITED, 429, 3.0, "ProviderError", "tb")


def test_rule_decorator():
    m = RetryManager()

    @m.rule
    def quota(exc):
        return K.PERMANENT if "quota" in str(exc) else None

    assert m.failure_from_exception(RuntimeError("quota exceeded")).kind is K.PERMANENT
