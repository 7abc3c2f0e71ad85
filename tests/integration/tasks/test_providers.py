"""The real providers against a local OpenAI-compatible HTTP server, with the real openai SDK and httpx as
clients: in-process calls first, then end to end through real worker processes and the CLI."""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai  # a test dependency (pyproject's test extra): these tests never skip
import pytest

from genqueue.backend.queues import fetch_job
from genqueue.jobs.status import job_status
from genqueue.retry.classify import Classifier, retry_after_of
from genqueue.retry.kinds import ErrorKind
from genqueue.tasks.context import TaskContext, reset, set_current, take_pause
from genqueue.tasks.providers import provider_from_env
from tests.helpers import run_cli, wait_for

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # a PNG signature and some payload bytes
PNG_2 = b"\x89PNG\r\n\x1a\n" + b"second image"
CONTENT_POLICY = {
    "error": {
        "message": "Your request was rejected as a result of our safety system.",
        "type": "invalid_request_error",
        "code": "content_policy_violation",
        "param": None,
    }
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    echo_auth: bool = False  # put the request's Authorization header in the body (a careless server)
    watch_close: bool = False  # during delay_s, notice the client closing the connection (FakeAPI.closed)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeAPI:
    """An HTTP server on 127.0.0.1 (ephemeral port, own thread) that records every request and answers the
    replies scripted for its Idempotency-Key, reply i for the key's i-th request, the last one repeating."""

    def __init__(self):
        self.seen: list[Seen] = []
        self.scripts: dict[str, list[Reply]] = {}
        self.default = Reply(404, {"error": {"message": "nothing scripted for this request"}})
        self.release = threading.Event()  # set at teardown: delayed replies stop waiting
        self.closed: list[str] = []  # the keys whose client closed the connection before the answer
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = api.record(Seen("POST", self.path, headers, body))
                if reply.delay_s and reply.watch_close:
                    if api.closed_within(self.connection, reply.delay_s):
                        api.closed.append(headers.get("idempotency-key", ""))
                        return  # the client went away before the answer: nothing to send
                elif reply.delay_s:
                    api.release.wait(reply.delay_s)
                content = reply.body
                if reply.echo_auth:
                    content = {**(content or {}), "you_sent": headers.get("authorization")}
                data = content if isinstance(content, bytes) else json.dumps(content).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def record(self, seen: Seen) -> Reply:
        with self._lock:
            key = seen.headers.get("idempotency-key", "")
            n = sum(1 for s in self.seen if s.headers.get("idempotency-key", "") == key)
            self.seen.append(seen)
            replies = self.scripts.get(key)
            return replies[min(n, len(replies) - 1)] if replies else self.default

    def closed_within(self, sock: socket.socket, seconds: float) -> bool:
        """Did the client close the connection (EOF) before `seconds` passed (or teardown)?"""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.release.is_set():
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                try:
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        return True
                except OSError:
                    return True
        return False

    def script(self, key: str, *replies: Reply) -> None:
        self.scripts[key] = list(replies)

    def requests_for(self, key: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.headers.get("idempotency-key") == key]


@pytest.fixture
def api():
    fake = FakeAPI()
    fake.thread.start()
    yield fake
    fake.release.set()
    fake.server.shutdown()
    fake.server.server_close()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "GENQUEUE_"))}
    env.update(extra)
    return env


@pytest.fixture
def openai_provider(api, tmp_path, monkeypatch):
    def make(**extra: str):
        env = clean_env(
            GENQUEUE_PROVIDER="openai",
            OPENAI_BASE_URL=f"{api.url}/v1",
            OPENAI_API_KEY="test",
            GENQUEUE_HOME=str(tmp_path),
            **extra,
        )
        for name in [k for k in os.environ if k.startswith("OPENAI_")]:
            monkeypatch.delenv(name)  # the SDK falls back to os.environ for what env leaves unset
        return provider_from_env(env)

    return make


def images_reply(*images: bytes) -> Reply:
    return Reply(
        200,
        {
            "created": 1700000000,
            "data": [{"b64_json": b64(i)} for i in images],
            "output_format": "png",
            "usage": {"input_tokens": 5, "output_tokens": 10, "total_tokens": 15},
        },
    )


# --- in process: the provider and the real SDK against the fake API -----------------------------------------


def test_images_endpoint_writes_b64_images_to_the_artifact_store(api, openai_provider, tmp_path):
    api.script("job-img-1", images_reply(PNG, PNG_2))
    result = openai_provider().call(
        {"prompt": "a red fox", "model": "gpt-image-1", "params": {"size": "1024x1024"}}, attempt=1, job_id="job-img-1"
    )
    [req] = api.seen
    assert (req.path, req.body) == (
        "/v1/images/generations",
        {"model": "gpt-image-1", "prompt": "a red fox", "size": "1024x1024"},
    )
    assert req.headers["idempotency-key"] == "job-img-1" and req.headers["authorization"] == "Bearer test"
    folder = Path(urlsplit(result["data"][0]["uri"]).path).parent  # <tenant>/<job id>/<incarnation>
    assert folder.parent == tmp_path / "artifacts" / "-" / "job-img-1"
    assert [d["uri"] for d in result["data"]] == [(folder / "0.png").as_uri(), (folder / "1.png").as_uri()]
    assert (folder / "0.png").read_bytes() == PNG and (folder / "1.png").read_bytes() == PNG_2
    assert sorted(p.name for p in folder.iterdir()) == ["0.png", "1.png"]  # no temporary files left behind
    assert all(d["b64_json"] is None for d in result["data"])
    assert result["usage"]["total_tokens"] == 15 and json.loads(json.dumps(result)) == result


def test_chat_endpoint(api, openai_provider):
    api.script(
        "job-chat",
        Reply(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1700000000,
                "model": "gpt-4o-mini",
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "a haiku"}}
                ],
            },
        ),
    )
    result = openai_provider().call(
        {"prompt": "write a haiku", "model": "gpt-4o-mini", "endpoint": "chat", "params": {"temperature": 0.2}},
        attempt=1,
        job_id="job-chat",
    )
    [req] = api.seen
    assert req.path == "/v1/chat/completions" and req.headers["idempotency-key"] == "job-chat"
    assert req.body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "write a haiku"}],
        "temperature": 0.2,
    }
    assert result["choices"][0]["message"]["content"] == "a haiku" and result["id"] == "chatcmpl-1"


def test_responses_endpoint_and_its_generated_images(api, openai_provider, tmp_path):
    api.script(
        "job-resp",
        Reply(
            200,
            {
                "id": "resp_1",
                "object": "response",
                "created_at": 1700000000,
                "model": "gpt-4.1",
                "status": "completed",
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
                "output": [
                    {
                        "type": "message",
                        "id": "msg_1",
                        "role": "assistant",
                        "status": "completed",
                        "content": [{"type": "output_text", "text": "here it is", "annotations": []}],
                    },
                    {"type": "image_generation_call", "id": "ig_1", "status": "completed", "result": b64(PNG)},
                ],
            },
        ),
    )
    result = openai_provider().call(
        {"prompt": "draw a fox", "model": "gpt-4.1", "endpoint": "responses"}, attempt=1, job_id="job-resp"
    )
    [req] = api.seen
    assert (req.path, req.body) == ("/v1/responses", {"model": "gpt-4.1", "input": "draw a fox"})
    assert result["output"][0]["content"][0]["text"] == "here it is"
    image = result["output"][1]
    artifact = Path(urlsplit(image["uri"]).path)
    assert image["result"] is None and artifact.parent.parent == tmp_path / "artifacts" / "-" / "job-resp"
    assert artifact.name == "0.png" and artifact.read_bytes() == PNG


def test_429_is_one_request_and_its_retry_after_ms_reaches_the_classifier(api, openai_provider):
    api.script(
        "job-429",
        Reply(
            429, {"error": {"message": "Rate limit reached", "type": "requests"}}, headers={"retry-after-ms": "1500"}
        ),
        images_reply(PNG),
    )
    with pytest.raises(openai.RateLimitError) as info:
        openai_provider().call({"prompt": "p", "model": "gpt-image-1"}, attempt=1, job_id="job-429")
    assert len(api.seen) == 1  # the SDK's own retry (it honours retry-after-ms) is off
    assert Classifier().classify(info.value) is ErrorKind.RATE_LIMITED and retry_after_of(info.value) == 1.5


def test_a_429_without_retry_after_waits_for_the_spent_limits_reset(api, openai_provider):
    api.script(
        "job-429-reset",
        Reply(
            429,
            {"error": {"message": "Rate limit reached for requests"}},
            headers={
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "6m0s",
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-tokens": "20ms",
            },
        ),
    )
    with pytest.raises(openai.RateLimitError) as info:
        openai_provider().call({"prompt": "p", "model": "gpt-image-1"}, attempt=1, job_id="job-429-reset")
    assert retry_after_of(info.value) == 360.0  # the latest reset among the exhausted limits


def test_a_2xx_saying_a_limit_is_spent_asks_the_worker_to_pause_the_key(api, openai_provider):
    ctx = TaskContext(job_id="job-ctx", task="generate", queue="q", attempt=1, replays=0, tenant=None, deadline=None)
    api.script(
        "fresh",
        Reply(
            200,
            images_reply(PNG).body,
            headers={"x-ratelimit-remaining-requests": "4", "x-ratelimit-reset-requests": "6m0s"},
        ),
    )
    api.script(
        "spent",
        Reply(
            200,
            images_reply(PNG).body,
            headers={"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m0s"},
        ),
    )
    api.script(
        "spent-http",
        Reply(
            200,
            {"output": "a fox"},
            headers={
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": "2999-01-01T00:00:00Z",
            },
        ),
    )
    token = set_current(ctx)
    try:
        openai_provider().call({"prompt": "p", "model": "gpt-image-1"}, attempt=1, job_id="fresh")
        assert take_pause("job-ctx") == 0.0  # limits left: no pause
        openai_provider().call({"prompt": "p", "model": "gpt-image-1"}, attempt=1, job_id="spent")
        assert 50 < take_pause("job-ctx") <= 60
        assert http_provider(api).call({"prompt": "p"}, attempt=1, job_id="spent-http") == {"output": "a fox"}
        assert take_pause("job-ctx") > 10**9  # the http provider reads them too (Anthropic's, here)
    finally:
        reset(token)


def test_500_is_one_request(api, openai_provider):
    api.script("job-500", Reply(500, {"error": {"message": "The server had an error"}}), images_reply(PNG))
    with pytest.raises(openai.InternalServerError) as info:
        openai_provider().call({"prompt": "p", "model": "gpt-image-1"}, attempt=1, job_id="job-500")
    assert len(api.seen) == 1 and Classifier().classify(info.value) is ErrorKind.TRANSIENT


def test_x_should_retry_false_makes_a_429_permanent(api, openai_provider):
    api.script(
        "job-quota",
        Reply(
            429,
            {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}},
            headers={"x-should-retry": "false"},
        ),
    )
    with pytest.raises(openai.RateLimitError) as info:
        openai_provider().call({"prompt": "p", "model": "gpt-image-1"}, attempt=1, job_id="job-quota")
    assert Classifier().classify(info.value) is ErrorKind.PERMANENT


def test_content_policy_400_propagates_as_bad_request(api, openai_provider):
    api.script("job-400", Reply(400, CONTENT_POLICY))
    with pytest.raises(openai.BadRequestError) as info:
        openai_provider().call({"prompt": "p", "model": "gpt-image-1"}, attempt=1, job_id="job-400")
    assert len(api.seen) == 1 and info.value.code == "content_policy_violation"
    assert "safety system" in str(info.value) and Classifier().classify(info.value) is ErrorKind.PERMANENT


def test_a_slow_answer_times_out_promptly_as_api_timeout_error(api, openai_provider):
    api.script("job-slow", Reply(200, {"created": 1, "data": []}, delay_s=20))
    provider = openai_provider(GENQUEUE_PROVIDER_TIMEOUT="0.5")
    assert provider.timeout_s == 0.5  # what each call passes the SDK (call_timeout; its cap is unit-tested)
    with pytest.raises(openai.APITimeoutError) as info:  # the server answers 200 after 20 s: only a timeout raises
        provider.call({"prompt": "p", "model": "gpt-image-1"}, attempt=1, job_id="job-slow")
    assert len(api.seen) == 1 and Classifier().classify(info.value) is ErrorKind.TIMEOUT


def test_a_refused_connection_is_transient(openai_provider, tmp_path):
    closed = FakeAPI()  # bound, then closed: nothing listens on its port
    closed.server.server_close()
    provider = provider_from_env(
        clean_env(
            GENQUEUE_PROVIDER="openai",
            OPENAI_BASE_URL=f"{closed.url}/v1",
            OPENAI_API_KEY="test",
            GENQUEUE_HOME=str(tmp_path),
        )
    )
    with pytest.raises(openai.APIConnectionError) as info:
        provider.call({"prompt": "p", "model": "gpt-image-1"}, attempt=1, job_id="job-refused")
    assert not isinstance(info.value, openai.APITimeoutError)
    assert Classifier().classify(info.value) is ErrorKind.TRANSIENT


def test_bad_payloads_fail_before_any_request(api, openai_provider):
    provider = openai_provider()
    for payload, match in [
        ({"prompt": "p", "model": "m", "endpoint": "audio"}, "endpoint"),
        ({"prompt": "p"}, "model"),
        ({"prompt": "p", "model": "m", "params": {"stream": True}}, "stream"),
    ]:
        with pytest.raises(ValueError, match=match):
            provider.call(payload, attempt=1, job_id="job-bad")
    assert api.seen == []


def http_provider(api, **extra: str):
    return provider_from_env(clean_env(GENQUEUE_PROVIDER="http", GENQUEUE_PROVIDER_URL=f"{api.url}/generate", **extra))


def test_http_provider_errors_carry_status_headers_and_no_token(api):
    token = "tok-" + os.urandom(8).hex()
    api.script("h-503", Reply(503, {"error": "busy"}, headers={"Retry-After": "7"}))
    api.script("h-401", Reply(401, {"error": "bad token"}, echo_auth=True))
    provider = http_provider(api, GENQUEUE_PROVIDER_TOKEN=token)
    with pytest.raises(httpx.HTTPStatusError) as busy:
        provider.call({"prompt": "p"}, attempt=1, job_id="h-503")
    assert busy.value.status_code == 503 and busy.value.headers["retry-after"] == "7"
    assert Classifier().classify(busy.value) is ErrorKind.TRANSIENT and retry_after_of(busy.value) == 7.0
    with pytest.raises(httpx.HTTPStatusError) as denied:
        provider.call({"prompt": "p"}, attempt=1, job_id="h-401")
    assert Classifier().classify(denied.value) is ErrorKind.PERMANENT
    assert "Bearer ***" in str(denied.value) and token not in str(denied.value) and token not in repr(provider)
    assert [s.headers["authorization"] for s in api.seen] == [f"Bearer {token}"] * 2


def test_http_provider_timeouts_and_refusals_are_httpx_errors(api):
    api.script("h-slow", Reply(200, {"ok": True}, delay_s=20))
    with pytest.raises(httpx.ReadTimeout) as slow:
        http_provider(api, GENQUEUE_PROVIDER_TIMEOUT="0.3").call({"prompt": "p"}, attempt=1, job_id="h-slow")
    assert Classifier().classify(slow.value) is ErrorKind.TIMEOUT
    closed = FakeAPI()  # bound, then closed: nothing listens on its port
    closed.server.server_close()
    with pytest.raises(httpx.ConnectError) as refused:
        provider_from_env(clean_env(GENQUEUE_PROVIDER="http", GENQUEUE_PROVIDER_URL=closed.url)).call(
            {"prompt": "p"}, attempt=1, job_id="h-refused"
        )
    assert Classifier().classify(refused.value) is ErrorKind.TRANSIENT


# --- end to end: real worker processes, jobs enqueued through the CLI ----------------------------------------


def wait_status(conn, store, job_id, want, timeout=40):
    def check():
        info = job_status(conn, store, job_id)
        return info if info["status"] == want else None

    return wait_for(check, timeout, message=f"job {job_id} to be {want}")


def enqueue(env, job_id, payload):
    r = run_cli(env, "enqueue", "--payload", json.dumps(payload), "--job-id", job_id)
    assert r.code == 0, r.stderr


def test_openai_provider_end_to_end(api, env, workers, conn, store, server, queue_name):
    _, home = server
    for name in [k for k in env if k.startswith("OPENAI_")]:
        del env[name]
    env.update(
        GENQUEUE_PROVIDER="openai",
        OPENAI_BASE_URL=f"{api.url}/v1",
        OPENAI_API_KEY="test",
        GENQUEUE_PROVIDER_TIMEOUT="20",
    )
    ok, bad = f"img-{queue_name}", f"nsfw-{queue_name}"
    api.script(
        ok,
        Reply(429, {"error": {"message": "Rate limit reached for images"}}, headers={"retry-after-ms": "200"}),
        images_reply(PNG),
    )
    api.script(bad, Reply(400, CONTENT_POLICY))
    w = workers()
    enqueue(env, ok, {"prompt": "a red fox", "model": "gpt-image-1", "params": {"quality": "low"}})
    enqueue(env, bad, {"prompt": "something else", "model": "gpt-image-1"})

    info = wait_status(conn, store, ok, "finished")
    [h] = info["history"]
    assert (h["kind"], h["action"], h["error"]["status_code"], h["error"]["type"]) == (
        "RATE_LIMITED",
        "retry",
        429,
        "RateLimitError",
    )
    assert h["retry_after"] == 0.2 and h["delay"] >= 0.2  # retry-after-ms, read by the classifier
    result = fetch_job(conn, ok).return_value()
    artifact = Path(urlsplit(result["data"][0]["uri"]).path)
    assert artifact.parent.parent == Path(home) / "artifacts" / "-" / ok and artifact.read_bytes() == PNG
    assert [s.headers["idempotency-key"] for s in api.requests_for(ok)] == [ok, ok]
    assert api.requests_for(ok)[0].body == {"model": "gpt-image-1", "prompt": "a red fox", "quality": "low"}

    wait_for(lambda: store.exists(bad), 40, message="DLQ entry")
    entry = store.get(bad)
    assert (entry["reason"], entry["error"]["kind"], entry["error"]["status_code"], entry["error"]["type"]) == (
        "non_retryable",
        "PERMANENT",
        400,
        "BadRequestError",
    )
    assert "safety system" in entry["error"]["message"] and len(api.requests_for(bad)) == 1
    assert w.alive()


def test_http_provider_end_to_end(api, env, workers, conn, store, queue_name):
    token = "s3cret-" + os.urandom(8).hex()
    env.update(GENQUEUE_PROVIDER="http", GENQUEUE_PROVIDER_URL=f"{api.url}/generate", GENQUEUE_PROVIDER_TOKEN=token)
    ok, flaky, denied = f"ok-{queue_name}", f"flaky-{queue_name}", f"denied-{queue_name}"
    api.script(ok, Reply(200, {"output": "a fox", "provider_job_id": "p-1"}))
    api.script(flaky, Reply(503, {"error": "overloaded"}), Reply(200, {"output": "a whale"}))
    api.script(denied, Reply(401, {"error": "invalid token"}, echo_auth=True))
    w = workers(simple=True)
    for job_id in (ok, flaky, denied):
        enqueue(env, job_id, {"prompt": f"prompt for {job_id}", "model": "m1", "user_id": "u1"})

    assert wait_status(conn, store, ok, "finished")["history"] == []
    assert fetch_job(conn, ok).return_value() == {"output": "a fox", "provider_job_id": "p-1"}
    info = wait_status(conn, store, flaky, "finished")
    [h] = info["history"]
    assert (h["kind"], h["action"], h["error"]["status_code"]) == ("TRANSIENT", "retry", 503)
    assert fetch_job(conn, flaky).return_value() == {"output": "a whale"}

    wait_for(lambda: store.exists(denied), 40, message="DLQ entry")
    entry = store.get(denied)
    error = entry["error"]
    assert (entry["reason"], error["kind"], error["status_code"]) == ("non_retryable", "PERMANENT", 401)
    assert "Bearer ***" in entry["error"]["message"]  # the server echoed the token; the message did not

    seen = api.seen
    assert len(seen) == 4 and {s.path for s in seen} == {"/generate"}
    assert all(s.headers["authorization"] == f"Bearer {token}" for s in seen)
    assert sorted(s.headers["idempotency-key"] for s in seen) == sorted([ok, flaky, flaky, denied])
    assert seen[0].body["prompt"].startswith("prompt for ")
    for text in (
        json.dumps(entry),
        json.dumps(info),
        json.dumps(job_status(conn, store, ok)),
        json.dumps(fetch_job(conn, flaky).meta),
        w.log(),
    ):
        assert token not in text


def test_a_200_saying_the_limit_is_spent_pauses_the_key_and_the_next_job_parks(
    api, env, workers, conn, store, queue_name
):
    """OpenAI's headers on a success: requests remaining 0, reset in 10 s. The key `openai:<model>` is paused
    by the success move itself, so the key's next job parks without a request, and runs once the pause ends."""
    from genqueue.jobs.enqueue import enqueue as enqueue_job
    from genqueue.limits.store import describe

    for name in [k for k in env if k.startswith("OPENAI_")]:
        del env[name]
    env.update(
        GENQUEUE_PROVIDER="openai",
        OPENAI_BASE_URL=f"{api.url}/v1",
        OPENAI_API_KEY="test",
        GENQUEUE_PROVIDER_TIMEOUT="20",
    )
    model, first, second = f"img-{queue_name}", f"spent-{queue_name}", f"next-{queue_name}"
    spent = {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "10s",
        "x-ratelimit-limit-tokens": "160000",
        "x-ratelimit-remaining-tokens": "159976",
        "x-ratelimit-reset-tokens": "9ms",
    }
    api.script(first, Reply(200, images_reply(PNG).body, headers=spent))
    api.script(second, images_reply(PNG_2))
    workers()
    enqueue_job(conn, queue_name, {"prompt": "a red fox", "model": model}, job_id=first)
    assert wait_status(conn, store, first, "finished")["history"] == []

    [row] = describe(conn, f"openai:{model}")
    assert row["state"] == "paused" and 0 < row["paused_for_s"] <= 10  # until the reset, from the 200 itself
    enqueue_job(conn, queue_name, {"prompt": "a grey whale", "model": model}, job_id=second)
    wait_status(conn, store, second, "parked")
    assert api.requests_for(second) == []  # parked on the pause: no call into a 429
    assert describe(conn, f"openai:{model}")[0]["parked"] == 1

    info = wait_status(conn, store, second, "finished")  # the pause ends, the parked job wakes and runs
    assert info["history"] == [] and len(api.requests_for(second)) == 1 and len(api.requests_for(first)) == 1
    assert fetch_job(conn, second).return_value()["data"][0]["uri"].endswith("/0.png")


# --- a canceled job's request is closed (providers/abort.py) ------------------------------------------------


@pytest.mark.parametrize(("provider", "mode"), [("http", "fork"), ("openai", "concurrent"), ("http", "concurrent")])
def test_a_canceled_jobs_provider_request_is_closed_before_its_answer(
    api, env, workers, conn, store, queue_name, provider, mode
):
    for name in [k for k in env if k.startswith("OPENAI_")]:
        del env[name]
    env.update(
        GENQUEUE_PROVIDER=provider,
        GENQUEUE_PROVIDER_URL=f"{api.url}/generate",
        OPENAI_BASE_URL=f"{api.url}/v1",
        OPENAI_API_KEY="test",
        GENQUEUE_PROVIDER_TIMEOUT="90",
        GENQUEUE_CANCEL_GRACE="120",  # the worker's own stop (a killed horse closes its sockets too) comes too late
    )
    job_id = f"slow-{queue_name}"
    api.script(job_id, Reply(200, {"output": "too late"}, delay_s=80, watch_close=True))
    w = workers(extra={"fork": (), "concurrent": ("--concurrency", "4")}[mode])
    enqueue(env, job_id, {"prompt": "a long video", "model": "m1"})
    wait_for(lambda: len(api.requests_for(job_id)) == 1, 60, message="the provider call to start")
    r = run_cli(env, "jobs", "cancel", job_id, "--json")
    assert r.code == 0 and r.json()["stopping"] is True, r.stderr
    wait_for(lambda: job_id in api.closed, 40, message="the provider to see the connection closed")
    info = wait_status(conn, store, job_id, "canceled")
    assert [h["action"] for h in info["history"]] == ["canceled"]  # never retried
    assert len(api.requests_for(job_id)) == 1 and w.alive()
    wait_for(lambda: "provider.call_aborted" in w.log(), 30, message="the abort logged")
