import socket

import pytest
from rq.timeouts import JobTimeoutException

from genqueue.retry import PermanentError, RateLimited, TransientError, Verdict
from genqueue.retry.classify import Classifier, parse_retry_after, retry_after_of, status_code_of
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
        (socket.timeout(), K.TIMEOUT),
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
    [(5, 5.0), ("7", 7.0), ("1.5", 1.5), ("-3", None), ("soon", None), (None, None), (float("nan"), None),
     (True, None), ("", None)],
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
