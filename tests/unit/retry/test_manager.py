import sys

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
    assert (
        m.decide(fail(K.TRANSIENT), RetryState(retries=1, max_retries=1, history_kinds=("TRANSIENT",))).action == "dead"
    )
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
    from genqueue.tasks.providers.simulated import ProviderError

    f = RetryManager().failure_from_exception(ProviderError(429, "slow down", retry_after=3), "tb")
    assert (f.kind, f.status_code, f.retry_after, f.type, f.traceback) == (
        K.RATE_LIMITED,
        429,
        3.0,
        "ProviderError",
        "tb",
    )


def test_rule_decorator():
    m = RetryManager()

    @m.rule
    def quota(exc):
        return K.PERMANENT if "quota" in str(exc) else None

    assert m.failure_from_exception(RuntimeError("quota exceeded")).kind is K.PERMANENT


def test_per_job_policy_override_changes_maximum_and_base():
    m = RetryManager(rand=mid)
    state = RetryState(retries=2, history_kinds=("TRANSIENT", "TRANSIENT"), policy_overrides={"TRANSIENT": {"max": 2}})
    assert m.decide(fail(K.TRANSIENT), state).reason is Reason.EXHAUSTED
    state = RetryState(policy_overrides={"TIMEOUT": {"base": 1, "cap": 2}})
    assert m.decide(fail(K.TIMEOUT), state).delay == 1.0


def test_settings_overrides_build_the_managers_policies():
    from genqueue.settings import Settings

    s = Settings.from_env({"GENQUEUE_POLICY_TRANSIENT": "max=1,base=2,cap=3", "GENQUEUE_BACKOFF_SCALE": "0.5"})
    m = RetryManager.from_settings(s, rand=mid)
    p = m.policies[K.TRANSIENT]
    assert (p.max_retries, p.base_s, p.cap_s) == (1, 1.0, 1.5)
    assert m.policies[K.TIMEOUT].max_retries == 3


def test_bad_policy_specs_are_refused():
    import pytest

    from genqueue.errors import InvalidInput
    from genqueue.settings import Settings

    for env in (
        {"GENQUEUE_POLICY_TRANSIENT": "max=lots"},
        {"GENQUEUE_POLICY_NOPE": "max=1"},
        {"GENQUEUE_POLICY_TIMEOUT": "speed=3"},
        {"GENQUEUE_POLICY_TIMEOUT": "factor=0.5"},
    ):
        with pytest.raises(InvalidInput):
            Settings.from_env(env)


def test_garbage_retry_after_is_ignored_with_a_log_line(capsys):
    from genqueue.support.logs import configure
    from genqueue.tasks.providers.simulated import ProviderError

    configure("json")  # bound to capsys's stderr, which closes with this test: reset after
    try:
        exc = ProviderError(429, "slow down")
        exc.headers = {"Retry-After": "whenever"}
        f = RetryManager().failure_from_exception(exc)
    finally:
        configure("json", stream=sys.__stderr__)
    assert f.kind is K.RATE_LIMITED and f.retry_after is None
    assert "retry.bad_retry_after" in capsys.readouterr().err


def test_rules_named_in_the_environment_are_loaded():
    import pytest

    from genqueue.errors import InvalidInput
    from genqueue.settings import Settings

    m = RetryManager.from_settings(Settings.from_env({"GENQUEUE_RETRY_RULES": "tests.unit.retry.sample_rules:RULES"}))
    assert m.failure_from_exception(RuntimeError("quota exhausted for org")).kind is K.PERMANENT
    with pytest.raises(InvalidInput, match="GENQUEUE_RETRY_RULES"):
        RetryManager.from_settings(Settings.from_env({"GENQUEUE_RETRY_RULES": "no.such.module:RULES"}))


def test_a_rules_delay_is_used_like_a_retry_after():
    from genqueue.retry import Verdict

    def busy(exc):
        return Verdict(K.RATE_LIMITED, retry_after=float(str(exc).split()[-1])) if "busy" in str(exc) else None

    m = RetryManager(rand=mid, rules=[busy])
    exc = RuntimeError("GPU busy 42")
    exc.headers = {"Retry-After": "5"}  # the rule's own delay wins over the exception's
    f = m.failure_from_exception(exc)
    assert (f.kind, f.retry_after) == (K.RATE_LIMITED, 42.0)
    # RATE_LIMITED with a Retry-After: exactly then (capped), no backoff on top (the key is paused meanwhile)
    d = m.decide(f, RetryState())
    assert d.is_retry and (d.delay, d.retry_after, d.clipped) == (42.0, 42.0, False)
    assert m.decide(m.failure_from_exception(RuntimeError("GPU busy 3")), RetryState()).delay == 3.0
    d = m.decide(m.failure_from_exception(RuntimeError("GPU busy 99999")), RetryState())
    assert (d.delay, d.clipped) == (3600, True)


def test_a_rule_without_a_delay_leaves_the_exceptions_delay():
    from genqueue.retry import Verdict

    m = RetryManager(rules=[lambda e: Verdict(K.RATE_LIMITED, note="busy GPU")])
    exc = RuntimeError("GPU busy")
    exc.headers = {"Retry-After": "2.5"}
    f = m.failure_from_exception(exc)
    assert (f.kind, f.retry_after, f.message) == (K.RATE_LIMITED, 2.5, "[busy GPU] GPU busy")


def test_insufficient_quota_says_why_in_the_failure_message():
    exc = RuntimeError("Error code: 429 - You exceeded your current quota")
    exc.status_code, exc.code = 429, "insufficient_quota"
    f = RetryManager().failure_from_exception(exc)
    assert f.kind is K.PERMANENT
    assert f.message.startswith("[insufficient_quota: out of credits, not retried] Error code: 429")
    assert RetryManager().decide(f, RetryState()).reason is Reason.NON_RETRYABLE


def test_a_verdict_rule_named_in_the_environment():
    from genqueue.settings import Settings

    m = RetryManager.from_settings(
        Settings.from_env({"GENQUEUE_RETRY_RULES": "tests.unit.retry.sample_rules:RULES"}), rand=mid
    )
    f = m.failure_from_exception(RuntimeError("GPU busy, come back later"))
    assert (f.kind, f.retry_after) == (K.RATE_LIMITED, 60.0)
    assert m.decide(f, RetryState()).delay == 60.0


def test_rate_limits_are_never_charged_and_are_bounded_by_max_wait():
    m = RetryManager(rand=mid)
    state = RetryState(retries=5, max_retries=5, history_kinds=("RATE_LIMITED",) * 20, rate_limited_since=1000.0)
    d = m.decide(fail(K.RATE_LIMITED, retry_after=2), state, now=1000.0 + 3599)
    assert d.is_retry and not d.charged and d.delay == 2  # a spent budget and 20 429s: still waiting
    d = m.decide(fail(K.RATE_LIMITED), RetryState(), now=50.0)
    assert d.is_retry and not d.charged and d.delay == 10.0  # no Retry-After: the kind's backoff
    d = m.decide(fail(K.RATE_LIMITED, retry_after=2), state, now=1000.0 + 3600)
    assert not d.is_retry and d.reason == "rate_limit_wait_exceeded"
    short = RetryState(rate_limited_since=0.0, max_wait_s=60)
    assert m.decide(fail(K.RATE_LIMITED), short, now=61).reason == "rate_limit_wait_exceeded"
