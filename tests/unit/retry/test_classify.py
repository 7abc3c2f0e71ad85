import pytest
from rq.timeouts import JobTimeoutException

from genqueue.retry import PermanentError, RateLimited, TransientError, Verdict
from genqueue.retry.classify import (
    Classifier,
    causes,
    parse_duration,
    parse_retry_after,
    retry_after_from,
    retry_after_of,
    status_code_of,
)
from genqueue.retry.kinds import ErrorKind as K
from genqueue.tasks.providers.simulated import ProviderError, ProviderTimeout


class HTTPError(Exception):
    def __init__(self, status, headers=None, attr="status_code"):
        super().__init__(f"HTTP {status}")
        setattr(self, attr, status)
        if headers is not None:
            self.headers = headers


class Response:
    def __init__(self, status_code, headers=None):
        self.status_code = status_code
        self.headers = headers or {}


class WithResponse(Exception):
    def __init__(self, response):
        super().__init__("boom")
        self.response = response


class ReadTimeout(Exception):  # shaped like requests/httpx: matched by name, no import
    pass


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TransientError("x"), K.TRANSIENT),
        (RateLimited(retry_after=3), K.RATE_LIMITED),
        (PermanentError("x"), K.PERMANENT),
        (JobTimeoutException("x"), K.TIMEOUT),
        (TimeoutError(), K.TIMEOUT),
        (TimeoutError(), K.TIMEOUT),
        (ReadTimeout(), K.TIMEOUT),
        (ProviderTimeout("x"), K.TIMEOUT),
        (HTTPError(429), K.RATE_LIMITED),
        (HTTPError(408), K.TIMEOUT),
        (HTTPError(500), K.TRANSIENT),
        (HTTPError(503, attr="status"), K.TRANSIENT),
        (HTTPError(401), K.PERMANENT),
        (HTTPError(422), K.PERMANENT),
        (HTTPError("502"), K.TRANSIENT),  # status as a string
        (WithResponse(Response(429)), K.RATE_LIMITED),
        (ProviderError(502, "bad gateway"), K.TRANSIENT),
        (ConnectionResetError(), K.TRANSIENT),
        (ConnectionRefusedError(), K.TRANSIENT),
        (ValueError("bad"), K.PERMANENT),
        (TypeError("bad"), K.PERMANENT),
        (RuntimeError("model temporarily unavailable"), K.TRANSIENT),
        (RuntimeError("something odd"), K.UNKNOWN),
        (WithResponse(None), K.UNKNOWN),  # missing response
        (HTTPError("teapot"), K.UNKNOWN),  # garbage status
    ],
)
def test_builtin_rules(exc, kind):
    assert Classifier().classify(exc) is kind


def test_rule_order_explicit_beats_status_and_timeout_beats_status():
    exc = PermanentError("x", status_code=503)
    assert Classifier().classify(exc) is K.PERMANENT

    class TimeoutWith500(TimeoutError):
        status_code = 500

    assert Classifier().classify(TimeoutWith500()) is K.TIMEOUT


def test_user_rules_take_precedence():
    c = Classifier(rules=[lambda e: K.PERMANENT if "quota" in str(e) else None])
    assert c.classify(HTTPError(429)) is K.RATE_LIMITED
    quota = HTTPError(429)
    quota.args = ("monthly quota exhausted",)
    assert c.classify(quota) is K.PERMANENT

    @c.add_rule
    def later(e):
        return K.TRANSIENT if isinstance(e, KeyError) else None

    assert c.classify(KeyError("x")) is K.TRANSIENT


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, 5.0),
        ("7", 7.0),
        ("1.5", 1.5),
        ("-3", None),
        ("soon", None),
        (None, None),
        (float("nan"), None),
        (True, None),
        ("", None),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value) == expected


def test_retry_after_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 60) == pytest.approx(60)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 + 60) == 0.0


def test_retry_after_from_exception_or_headers():
    assert retry_after_of(RateLimited(retry_after=4)) == 4.0
    assert retry_after_of(WithResponse(Response(429, {"Retry-After": "9"}))) == 9.0
    assert retry_after_of(WithResponse(Response(429, {}))) is None  # headers without Retry-After
    assert retry_after_of(ProviderError(429, "x", retry_after=2)) == 2.0
    assert status_code_of(WithResponse(Response(418))) == 418


# --- SDK-shaped errors (the real classes are in tests/integration/retry/test_sdk_errors.py) ---------------


class StatusError(Exception):
    """Shaped like openai's/anthropic's APIStatusError: status, response headers, decoded body."""

    def __init__(self, status, headers=None, body=None, code=None):
        super().__init__(f"Error code: {status}")
        self.status_code = status
        self.response = Response(status, headers)
        self.body = body
        if code is not None:
            self.code = code


class Wrapper(Exception):  # an SDK's APIConnectionError: a name no rule knows, the real error behind it
    pass


def test_409_is_permanent_unless_the_client_retries_it():
    assert Classifier().classify(HTTPError(409)) is K.PERMANENT
    for module in ("openai", "anthropic._exceptions"):
        sdk_error = type("ConflictError", (HTTPError,), {"__module__": module})
        assert Classifier().classify(sdk_error(409)) is K.TRANSIENT, module
    lookalike = type("ConflictError", (HTTPError,), {"__module__": "openai_compat"})
    assert Classifier().classify(lookalike(409)) is K.PERMANENT


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500", "retry-after": "7"}, 1.5),  # ms first, as both SDKs read it
        ({"Retry-After-Ms": "250"}, 0.25),  # header names in any case, even in a plain dict
        ({"retry-after-ms": "soon", "retry-after": "7"}, 7.0),  # garbage ms: fall back, like the SDKs
        ({"retry-after-ms": "-5", "Retry-After": "3"}, 3.0),
        ({"RETRY-AFTER": "9"}, 9.0),
        ({}, None),
    ],
)
def test_retry_after_ms_before_retry_after(headers, expected):
    assert retry_after_of(StatusError(429, headers)) == expected


def test_the_exceptions_own_retry_after_comes_first():
    exc = StatusError(429, {"retry-after-ms": "1500"})
    exc.retry_after = 4
    assert retry_after_of(exc) == 4.0


def test_garbage_everywhere_is_reported_as_the_first_bad_value():
    assert retry_after_from(StatusError(429, {"retry-after-ms": "x", "retry-after": "y"})) == (None, "x")
    assert retry_after_from(StatusError(429, {})) == (None, None)


def gemini_error(details, where="details"):
    exc = StatusError(429)
    setattr(exc, where, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": details}})
    return exc


RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        ([{"@type": "type.googleapis.com/google.rpc.QuotaFailure"}, {"@type": RETRY_INFO, "retryDelay": "37s"}], 37.0),
        ([{"@type": RETRY_INFO, "retryDelay": "1.5s"}], 1.5),
        ([{"@type": RETRY_INFO, "retryDelay": {"seconds": 2, "nanos": 500_000_000}}], 2.5),
        ([{"@type": RETRY_INFO, "retryDelay": "-3s"}], None),
        ([{"@type": RETRY_INFO, "retryDelay": "37"}], None),  # a Duration always ends in "s"
        ([{"@type": "type.googleapis.com/google.rpc.Help", "retryDelay": "37s"}], None),
        ("not a list", None),
    ],
)
def test_retry_info_in_the_body(details, expected):
    assert retry_after_of(gemini_error(details)) == expected


def test_retry_info_in_an_sdk_body_and_under_headers():
    assert retry_after_of(gemini_error([{"@type": RETRY_INFO, "retryDelay": "8s"}], where="body")) == 8.0
    exc = gemini_error([{"@type": RETRY_INFO, "retryDelay": "8s"}])
    exc.response.headers = {"retry-after": "2"}
    assert retry_after_of(exc) == 2.0  # a header beats the body


@pytest.mark.parametrize(
    ("value", "expected"),
    [("37s", 37.0), (" 0.25s ", 0.25), ("1m", None), (5, None), ({"nanos": 1_000_000}, 0.001), ({"seconds": -1}, None)],
)
def test_parse_duration(value, expected):
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("status", "flag", "kind"),
    [
        (503, "false", K.PERMANENT),
        (429, "false", K.PERMANENT),
        (400, "true", K.TRANSIENT),
        (401, "true", K.TRANSIENT),
        (429, "true", K.RATE_LIMITED),
        (408, "true", K.TIMEOUT),
        (500, " TRUE ", K.TRANSIENT),
        (400, "maybe", K.PERMANENT),  # not a yes or a no: the status decides
        (503, "maybe", K.TRANSIENT),
    ],
)
def test_x_should_retry_decides_before_the_status(status, flag, kind):
    assert Classifier().classify(StatusError(status, {"X-Should-Retry": flag})) is kind


def test_x_should_retry_false_says_why():
    verdict = Classifier().verdict(StatusError(503, {"x-should-retry": "false"}))
    assert verdict.kind is K.PERMANENT and "x-should-retry: false" in verdict.note


@pytest.mark.parametrize(
    "exc",
    [
        StatusError(
            429,
            body={
                "message": "You exceeded your current quota",
                "type": "insufficient_quota",
                "code": "insufficient_quota",
            },
            code="insufficient_quota",
        ),  # openai's attrs
        StatusError(429, body={"error": {"type": "insufficient_quota"}}),  # a body that kept its envelope
        StatusError(429, {"x-should-retry": "true"}, body={"code": "insufficient_quota"}),
    ],
)
def test_insufficient_quota_is_permanent(exc):
    verdict = Classifier().verdict(exc)
    assert verdict.kind is K.PERMANENT and "insufficient_quota" in verdict.note


def test_the_same_words_without_the_code_stay_rate_limited():
    exc = StatusError(429, body={"message": "You exceeded your current quota", "code": "rate_limit_exceeded"})
    exc.args = ("You exceeded your current quota, please check your plan and billing details.",)
    assert Classifier().classify(exc) is K.RATE_LIMITED


def test_status_from_code_when_there_is_no_response():
    class GeminiLike(Exception):
        code = 503
        status = "UNAVAILABLE"

    assert status_code_of(GeminiLike()) == 503 and Classifier().classify(GeminiLike()) is K.TRANSIENT
    assert status_code_of(StatusError(429, code="insufficient_quota")) == 429


def raised(make, cause=None, *, implicit=False):
    """An exception really raised from (or while handling) `cause`, as an SDK would."""
    try:
        if implicit:
            try:
                raise cause
            except Exception:  # noqa: BLE001 - whatever cause the test raised
                raise make()  # noqa: B904 - the implicit __context__ is the point
        raise make() from cause
    except Exception as exc:  # noqa: BLE001 - the built exception is the result
        return exc


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (raised(Wrapper, ConnectionRefusedError()), K.TRANSIENT),  # openai/anthropic APIConnectionError
        (raised(Wrapper, raised(Wrapper, ConnectionResetError())), K.TRANSIENT),  # two links down
        (raised(Wrapper, ReadTimeout()), K.TIMEOUT),
        (raised(Wrapper, TimeoutError(), implicit=True), K.TIMEOUT),
        (raised(Wrapper, None), K.UNKNOWN),  # raise … from None: nothing behind it
        (raised(Wrapper, RuntimeError("odd")), K.UNKNOWN),
        (raised(lambda: ValueError("bad"), ConnectionError(), implicit=True), K.PERMANENT),  # its own type first
        (raised(lambda: HTTPError(400), ConnectionError()), K.PERMANENT),  # its own status first
    ],
)
def test_the_cause_chain(exc, kind):
    assert Classifier().classify(exc) is kind


def test_a_suppressed_context_is_not_followed():
    try:
        try:
            raise ConnectionResetError()
        except ConnectionResetError:
            raise Wrapper() from None
    except Wrapper as exc:
        assert exc.__context__ is not None and Classifier().classify(exc) is K.UNKNOWN


def test_the_chain_is_bounded_and_cycle_safe():
    a, b = Wrapper("a"), Wrapper("b")
    a.__cause__, b.__cause__ = b, a
    assert list(causes(a)) == [b] and Classifier().classify(a) is K.UNKNOWN
    deep = ConnectionRefusedError()
    for _ in range(20):
        deep = raised(Wrapper, deep)
    assert len(list(causes(deep))) == 8 and Classifier().classify(deep) is K.UNKNOWN


def test_a_rule_may_return_a_verdict():
    c = Classifier(rules=[lambda e: Verdict(K.RATE_LIMITED, retry_after=30) if "GPU busy" in str(e) else None])
    assert c.classify(RuntimeError("GPU busy")) is K.RATE_LIMITED
    assert c.verdict(RuntimeError("GPU busy")) == Verdict(K.RATE_LIMITED, retry_after=30.0)
    assert c.verdict(RuntimeError("odd")) == Verdict(K.UNKNOWN)


def test_verdicts_are_normalised_and_checked():
    assert Verdict("permanent").kind is K.PERMANENT
    assert Verdict(K.TRANSIENT, retry_after="2.5").retry_after == 2.5
    for bad in (-1, "soon", float("inf")):
        with pytest.raises(ValueError):
            Verdict(K.TRANSIENT, retry_after=bad)
    with pytest.raises(ValueError):
        Verdict("SOMETIMES")


def test_a_rule_returning_anything_else_is_a_clear_error():
    def pair(exc):
        return (K.RATE_LIMITED, 30)

    with pytest.raises(TypeError, match="pair returned"):
        Classifier(rules=[pair]).classify(RuntimeError())
    assert Classifier(rules=[lambda e: "PERMANENT"]).classify(RuntimeError()) is K.PERMANENT  # a kind's name
