import math

from hypothesis import given
from hypothesis import strategies as st

from genqueue.retry.kinds import ErrorKind
from genqueue.retry.policy import DEFAULT_POLICIES, RetryPolicy

unit = st.floats(min_value=0.0, max_value=0.999999)
attempts = st.integers(min_value=-5, max_value=10_000)


def test_seed_backoff_doubles_from_five_seconds():
    p = RetryPolicy(max_retries=5, base_s=5.0)
    mid = lambda: 0.5  # noqa: E731 - no jitter at the midpoint
    assert [p.delay_for(n, rand=mid)[0] for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]


@given(n=attempts, u=unit)
def test_delay_never_exceeds_the_cap(n, u):
    for policy in DEFAULT_POLICIES.values():
        delay, _ = policy.delay_for(n, rand=lambda: u)
        assert 0 <= delay <= policy.cap_s


@given(n=st.integers(min_value=1, max_value=6), u=unit)
def test_jitter_stays_within_ten_percent_of_nominal(n, u):
    p = RetryPolicy(max_retries=9, base_s=5.0)
    nominal = 5.0 * 2 ** (n - 1)
    delay, clipped = p.delay_for(n, rand=lambda: u)
    assert nominal * 0.9 - 1e-9 <= delay <= nominal * 1.1 + 1e-9
    assert not clipped


@given(retry_after=st.floats(min_value=0, max_value=1e9, allow_nan=False), n=st.integers(1, 50), u=unit)
def test_retry_after_is_honoured_up_to_the_cap(retry_after, n, u):
    p = DEFAULT_POLICIES[ErrorKind.RATE_LIMITED]
    delay, clipped = p.delay_for(n, retry_after=retry_after, rand=lambda: u)
    assert delay == min(p.cap_s, max(p.delay_for(n, rand=lambda: u)[0], retry_after)) or clipped
    assert delay >= min(retry_after, p.cap_s)
    assert delay <= p.cap_s
    assert clipped == (max(retry_after, p.nominal(n) * (1 + p.jitter * (2 * u - 1))) > p.cap_s)


def test_huge_attempt_numbers_do_not_overflow():
    p = RetryPolicy(max_retries=3, base_s=5.0)
    assert p.nominal(10**9) == p.cap_s
    assert math.isfinite(p.delay_for(10**9, rand=lambda: 0.99)[0])


def test_zero_base_means_no_delay():
    assert RetryPolicy(max_retries=1, base_s=0.0).delay_for(3)[0] == 0.0


def test_scaled_policy_scales_base_and_cap_not_retries():
    p = DEFAULT_POLICIES[ErrorKind.TRANSIENT].scaled(0.04)
    assert (p.base_s, p.cap_s, p.max_retries) == (0.2, 144.0, 5)


def test_design_defaults():
    table = {k: (p.max_retries, p.base_s, p.factor, p.cap_s) for k, p in DEFAULT_POLICIES.items()}
    assert table[ErrorKind.TRANSIENT] == (5, 5.0, 2.0, 3600.0)
    assert table[ErrorKind.RATE_LIMITED] == (8, 10.0, 2.0, 3600.0)
    assert table[ErrorKind.TIMEOUT] == (3, 30.0, 2.0, 3600.0)
    assert table[ErrorKind.UNKNOWN] == (3, 5.0, 2.0, 3600.0)
    assert table[ErrorKind.PERMANENT][0] == 0
    assert table[ErrorKind.CRASH] == (3, 1.0, 2.0, 60.0)
