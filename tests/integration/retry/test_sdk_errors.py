"""The provider SDKs' real exceptions, raised by real calls, through RetryManager.failure_from_exception.

Each SDK client (its own retries off) calls a stdlib http.server on 127.0.0.1 (ephemeral port, a thread per
connection) that answers with the status, headers and body the test set, in the SDK's own error wire format,
or sleeps past the client's timeout; refused connections go to a socket that is bound but never listens.
No Redis. The server counts requests, so each test also checks that the SDK made exactly one (its own
retries really are off, and the exception is the first answer's).
"""

from __future__ import annotations

import email.utils
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import httpx
import openai
import pytest
import replicate
import requests
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from replicate.exceptions import ReplicateError

from genqueue.retry import Failure, RetryManager
from genqueue.retry.kinds import ErrorKind as K
from genqueue.retry.manager import RetryState

CLIENT_TIMEOUT_S = 0.3
SERVER_STALL_S = 5.0  # longer than any client timeout; cut short when the module's server stops


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"{}"
    content_type: str = "application/json"
    delay: float = 0.0


class StubServer:
    """Answers every request (any method, any path) with `self.answer`; counts the requests."""

    def __init__(self) -> None:
        self.answer = Answer()
        self.requests = 0
        self._lock = threading.Lock()
        self._release = threading.Event()  # ends a stalled answer early at shutdown
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with stub._lock:
                    stub.requests += 1
                    answer = stub.answer
                if answer.delay:
                    stub._release.wait(answer.delay)  # provoke the client's read timeout
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", answer.content_type)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:  # the client gave up (timeout) and closed the connection
                    self.close_connection = True

            do_GET = do_POST = _serve

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def set(
        self,
        status: int,
        body: bytes = b"{}",
        headers: dict[str, str] | None = None,
        *,
        content_type: str = "application/json",
        delay: float = 0.0,
    ) -> None:
        with self._lock:
            self.answer = Answer(status, dict(headers or {}), body, content_type, delay)
            self.requests = 0

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="module")
def stub():
    with StubServer() as server:
        yield server


@pytest.fixture(scope="module")
def refused_url():
    """A port bound on 127.0.0.1 but never listening: connecting to it is refused (ECONNREFUSED)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch):
    """The SDKs' HTTP clients honour proxy variables: keep 127.0.0.1 direct whatever the machine sets."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


# --- one call per SDK, each with the SDK's own retries off -------------------------------------------------
# A client per (SDK, server), made on first use and closed with the module: building one (an SSL context
# each) cost more than the call.

_clients: dict[tuple[str, str], object] = {}


def client_for(name: str, url: str, make: Callable[[], object]):
    if (name, url) not in _clients:
        _clients[name, url] = make()
    return _clients[name, url]


@pytest.fixture(scope="module", autouse=True)
def close_clients():
    yield
    for client in _clients.values():
        close = getattr(client, "close", None) or getattr(getattr(client, "_client", None), "close", None)
        if close is not None:
            close()
    _clients.clear()


def call_openai(url: str) -> None:
    client = client_for(
        "openai", url, lambda: openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=CLIENT_TIMEOUT_S)
    )
    client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])


def call_anthropic(url: str) -> None:
    client = client_for(
        "anthropic",
        url,
        lambda: anthropic.Anthropic(base_url=url, api_key="x", max_retries=0, timeout=CLIENT_TIMEOUT_S),
    )
    client.messages.create(model="claude-test", max_tokens=8, messages=[{"role": "user", "content": "hi"}])


def call_gemini(url: str) -> None:
    # No retry_options: the SDK makes one attempt. HttpOptions.timeout is in milliseconds. The Client must
    # stay referenced while its `models` is used: a dropped Client closes its HTTP client.
    client = client_for(
        "gemini",
        url,
        lambda: genai.Client(
            api_key="x", http_options=genai_types.HttpOptions(base_url=url, timeout=int(CLIENT_TIMEOUT_S * 1000))
        ),
    )
    client.models.generate_content(model="gemini-test", contents="hi")


def replicate_client(url: str):
    return client_for(
        "replicate", url, lambda: replicate.Client(api_token="x", base_url=url, timeout=httpx.Timeout(CLIENT_TIMEOUT_S))
    )


def call_replicate(url: str) -> None:
    # replicate.Client has no retry switch: its transport retries GET/PUT/DELETE on 429/503/504, never POST,
    # so creating a prediction (a POST) is one attempt.
    replicate_client(url).predictions.create(version="0" * 64, input={"prompt": "hi"})


def call_replicate_get(url: str) -> None:
    # predictions.create() without `wait` sends timeout=None, which turns the client's timeout off (it would
    # wait for ever): a read timeout needs a call that keeps it, like this GET (retried on statuses only).
    replicate_client(url).predictions.get("p1")


def call_httpx(url: str) -> None:
    client = client_for("httpx", url, lambda: httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT_S))
    client.post("/generate", json={"prompt": "hi"}).raise_for_status()


def call_requests(url: str) -> None:
    session = client_for("requests", url, requests.Session)
    session.post(f"{url}/generate", json={"prompt": "hi"}, timeout=CLIENT_TIMEOUT_S).raise_for_status()


# --- each SDK's error body on the wire -------------------------------------------------------------------

GRPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    529: "UNAVAILABLE",
}


def openai_body(status: int, message: str = "boom", type_: str = "server_error", code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


def anthropic_body(status: int, message: str = "boom", type_: str = "api_error") -> bytes:
    return json.dumps({"type": "error", "error": {"type": type_, "message": message}}).encode()


def gemini_body(status: int, message: str = "boom", details: list | None = None) -> bytes:
    error = {"code": status, "message": message, "status": GRPC_STATUS.get(status, "UNKNOWN")}
    if details is not None:
        error["details"] = details
    return json.dumps({"error": error}).encode()


def replicate_body(status: int, message: str = "boom") -> bytes:
    return json.dumps({"title": "Error", "detail": message, "status": status}).encode()


def plain_body(status: int, message: str = "boom") -> bytes:
    return json.dumps({"error": message}).encode()


@dataclass(frozen=True)
class Sdk:
    name: str
    call: Callable[[str], None]
    raised_from: tuple[str, ...]  # the packages its failures come from: the SDK's own, or its HTTP client's
    body: Callable[..., bytes]
    content_type: str = "application/json"
    keeps_headers: bool = True  # does the raised exception keep the response (and so its headers)?
    call_that_times_out: Callable[[str], None] | None = None  # when `call` ignores the client's timeout

    def __str__(self) -> str:
        return self.name


SDKS = [
    Sdk("openai", call_openai, ("openai",), openai_body),  # wraps its HTTP client's errors
    Sdk("anthropic", call_anthropic, ("anthropic",), anthropic_body),
    Sdk("gemini", call_gemini, ("google.genai", "httpx2"), gemini_body),  # raises httpx2's errors unwrapped
    # ReplicateError.from_response keeps only the problem+json fields: no response, no headers.
    Sdk(
        "replicate",
        call_replicate,
        ("replicate", "httpx"),
        replicate_body,
        content_type="application/problem+json",
        keeps_headers=False,
        call_that_times_out=call_replicate_get,
    ),
    Sdk("httpx", call_httpx, ("httpx",), plain_body),
    Sdk("requests", call_requests, ("requests",), plain_body),
]
by_sdk = pytest.mark.parametrize("sdk", SDKS, ids=str)


def fail_with(sdk: Sdk, url: str, call: Callable[[str], None] | None = None) -> tuple[BaseException, Failure]:
    with pytest.raises(Exception) as info:
        (call or sdk.call)(url)
    exc = info.value
    module = type(exc).__module__
    assert any(module == m or module.startswith(m + ".") for m in sdk.raised_from), f"{module}: {exc!r}"
    return exc, RetryManager().failure_from_exception(exc)


def answer_and_fail(
    stub: StubServer, sdk: Sdk, status: int, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[BaseException, Failure]:
    stub.set(status, sdk.body(status) if body is None else body, headers, content_type=sdk.content_type)
    exc, failure = fail_with(sdk, stub.url)
    assert stub.requests == 1, f"{sdk}: {stub.requests} requests (its own retries should be off)"
    assert failure.status_code == status
    return exc, failure


# --- every SDK ------------------------------------------------------------------------------------------


@by_sdk
def test_429_retry_after_ms_is_read_before_retry_after(stub, sdk):
    _, f = answer_and_fail(stub, sdk, 429, {"retry-after-ms": "1500", "retry-after": "7"})
    assert f.kind is K.RATE_LIMITED
    assert f.retry_after == (1.5 if sdk.keeps_headers else None)


@by_sdk
def test_429_retry_after_seconds(stub, sdk):
    _, f = answer_and_fail(stub, sdk, 429, {"retry-after": "7"})
    assert (f.kind, f.retry_after) == (K.RATE_LIMITED, 7.0 if sdk.keeps_headers else None)


@by_sdk
def test_429_retry_after_http_date(stub, sdk):
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    _, f = answer_and_fail(stub, sdk, 429, {"retry-after": when})
    assert f.kind is K.RATE_LIMITED
    if sdk.keeps_headers:
        assert 110 <= f.retry_after <= 121
    else:
        assert f.retry_after is None


@by_sdk
@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_transient(stub, sdk, status):
    _, f = answer_and_fail(stub, sdk, status)
    assert (f.kind, f.retry_after) == (K.TRANSIENT, None)


@by_sdk
@pytest.mark.parametrize("status", [400, 401])
def test_bad_request_and_unauthorised_are_permanent(stub, sdk, status):
    _, f = answer_and_fail(stub, sdk, status)
    assert f.kind is K.PERMANENT


@by_sdk
def test_409_is_transient_only_from_the_clients_that_retry_it(stub, sdk):
    """OpenAI's and Anthropic's 409 is a lock timeout, which both SDKs retry; google-genai, replicate, httpx
    and requests treat a 409 Conflict as final, and so does genqueue."""
    _, f = answer_and_fail(stub, sdk, 409)
    assert f.kind is (K.TRANSIENT if str(sdk) in ("openai", "anthropic") else K.PERMANENT)


@by_sdk
def test_x_should_retry_false_makes_a_503_permanent(stub, sdk):
    _, f = answer_and_fail(stub, sdk, 503, {"x-should-retry": "false"})
    if sdk.keeps_headers:
        assert f.kind is K.PERMANENT
        assert "x-should-retry: false" in f.message
    else:
        assert f.kind is K.TRANSIENT  # the header never reaches the exception


@by_sdk
def test_x_should_retry_true_makes_a_400_transient(stub, sdk):
    _, f = answer_and_fail(stub, sdk, 400, {"x-should-retry": "true"})
    assert f.kind is (K.TRANSIENT if sdk.keeps_headers else K.PERMANENT)


@by_sdk
def test_x_should_retry_true_keeps_a_429_rate_limited_with_its_delay(stub, sdk):
    _, f = answer_and_fail(stub, sdk, 429, {"x-should-retry": "true", "retry-after-ms": "250"})
    assert (f.kind, f.retry_after) == (K.RATE_LIMITED, 0.25 if sdk.keeps_headers else None)


@by_sdk
def test_read_timeout_past_the_client_timeout(stub, sdk):
    stub.set(200, delay=SERVER_STALL_S)
    exc, f = fail_with(sdk, stub.url, sdk.call_that_times_out)  # the stub answers 200 after its stall: no error
    assert stub.requests == 1
    assert f.kind is K.TIMEOUT, f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    assert f.retry_after is None


@by_sdk
def test_connection_refused(refused_url, sdk):
    exc, f = fail_with(sdk, refused_url)
    assert f.kind is K.TRANSIENT, f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    assert (f.status_code, f.retry_after) == (None, None)


# --- what only one SDK does ------------------------------------------------------------------------------

OPENAI = SDKS[0]
ANTHROPIC = SDKS[1]
GEMINI = SDKS[2]


def test_openai_timeout_and_connection_error_classes(stub, refused_url):
    stub.set(200, delay=SERVER_STALL_S)
    exc, f = fail_with(OPENAI, stub.url)
    assert type(exc) is openai.APITimeoutError and f.kind is K.TIMEOUT
    exc, f = fail_with(OPENAI, refused_url)
    assert type(exc) is openai.APIConnectionError and f.kind is K.TRANSIENT


def test_anthropic_timeout_and_connection_error_classes(stub, refused_url):
    stub.set(200, delay=SERVER_STALL_S)
    exc, f = fail_with(ANTHROPIC, stub.url)
    assert type(exc) is anthropic.APITimeoutError and f.kind is K.TIMEOUT
    exc, f = fail_with(ANTHROPIC, refused_url)
    assert type(exc) is anthropic.APIConnectionError and f.kind is K.TRANSIENT


def test_openai_insufficient_quota_is_permanent_and_says_why(stub):
    body = openai_body(
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        type_="insufficient_quota",
        code="insufficient_quota",
    )
    exc, f = answer_and_fail(stub, OPENAI, 429, {"retry-after": "20"}, body)
    assert isinstance(exc, openai.RateLimitError)
    assert "insufficient_quota" not in str(exc)  # openai 3.x puts only the body's message in str(exc)
    assert f.kind is K.PERMANENT
    assert "insufficient_quota" in f.message and "You exceeded your current quota" in f.message
    decision = RetryManager().decide(f, RetryState())
    assert decision.action == "dead"


def test_openai_rate_limit_with_the_same_words_but_another_code_stays_rate_limited(stub):
    body = openai_body(429, "Rate limit reached for requests", type_="requests", code="rate_limit_exceeded")
    _, f = answer_and_fail(stub, OPENAI, 429, {"retry-after-ms": "800"}, body)
    assert (f.kind, f.retry_after) == (K.RATE_LIMITED, 0.8)


def test_openai_content_policy_400_is_permanent(stub):
    body = openai_body(
        400,
        "Your request was rejected as a result of our safety system.",
        type_="invalid_request_error",
        code="content_policy_violation",
    )
    exc, f = answer_and_fail(stub, OPENAI, 400, None, body)
    assert isinstance(exc, openai.BadRequestError) and f.kind is K.PERMANENT


def test_anthropic_overloaded_529_is_transient(stub):
    exc, f = answer_and_fail(stub, ANTHROPIC, 529, None, anthropic_body(529, "Overloaded", "overloaded_error"))
    assert isinstance(exc, anthropic.InternalServerError) and f.kind is K.TRANSIENT


def gemini_quota_details(delay: str) -> list[dict]:
    return [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                }
            ],
        },
        {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more", "url": "x"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
    ]


@pytest.mark.parametrize(("delay", "seconds"), [("37s", 37.0), ("1.5s", 1.5), ("0.000340s", 0.00034)])
def test_gemini_429_retry_info_in_the_body(stub, delay, seconds):
    # Gemini's quota 429 says "You exceeded your current quota" too, but is retryable: only OpenAI's
    # insufficient_quota code makes a 429 permanent.
    body = gemini_body(
        429, "You exceeded your current quota, please check your plan and billing details.", gemini_quota_details(delay)
    )
    exc, f = answer_and_fail(stub, GEMINI, 429, None, body)
    assert isinstance(exc, genai_errors.ClientError) and exc.code == 429
    assert (f.kind, f.retry_after) == (K.RATE_LIMITED, pytest.approx(seconds))


def test_gemini_retry_after_header_beats_the_body(stub):
    _, f = answer_and_fail(stub, GEMINI, 429, {"retry-after": "3"}, gemini_body(429, "x", gemini_quota_details("37s")))
    assert f.retry_after == 3.0


def test_a_providers_delay_sets_the_retry_delay(stub):
    """RATE_LIMITED: delay = min(cap, max(backoff, retry_after)); the first backoff is 10 s ± 10 %."""
    _, f = answer_and_fail(stub, GEMINI, 429, None, gemini_body(429, "x", gemini_quota_details("37s")))
    decision = RetryManager(rand=lambda: 0.5).decide(f, RetryState())
    assert decision.is_retry and (decision.delay, decision.retry_after) == (37.0, 37.0)


def test_replicate_errors_keep_no_response(stub):
    """Why replicate's 429 waits the plain backoff: ReplicateError keeps status and problem+json fields only,
    so the Retry-After header (and the body's own retry_after, sent by Replicate's API) never reach genqueue."""
    body = json.dumps(
        {"title": "Request was throttled", "detail": "Your rate limit resets in ~5s.", "status": 429, "retry_after": 5}
    ).encode()
    exc, f = answer_and_fail(stub, SDKS[3], 429, {"retry-after": "5"}, body)
    assert type(exc) is ReplicateError and exc.status == 429 and not hasattr(exc, "response")
    assert (f.kind, f.retry_after) == (K.RATE_LIMITED, None)
