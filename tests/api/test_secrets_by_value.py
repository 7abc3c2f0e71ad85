"""Provider credentials never reach tenants, logs, Redis or exports: scrubbed by value before anything is cut
or stored; a credential with whitespace or a newline refused at worker start. Real workers, a provider
stub on 127.0.0.1 that echoes the token in a long error body, the real API app."""

from __future__ import annotations

import json
import os

import pytest

from tests.helpers import run_cli, wait_for
from tests.integration.tasks.test_providers import FakeAPI, Reply


@pytest.fixture
def provider_api():
    fake = FakeAPI()
    fake.thread.start()
    yield fake
    fake.release.set()
    fake.server.shutdown()
    fake.server.server_close()


def everything_in_redis(conn) -> str:
    """Every key and every value on the server, as one text."""
    out = []
    for key in conn.scan_iter(count=1000):
        kind = conn.type(key).decode()
        if kind == "string":
            value = conn.get(key)
        elif kind == "hash":
            value = conn.hgetall(key)
        elif kind == "list":
            value = conn.lrange(key, 0, -1)
        elif kind == "set":
            value = conn.smembers(key)
        elif kind == "zset":
            value = conn.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = conn.xrange(key)
        else:
            value = kind
        out.append(f"{key!r} {value!r}")
    return "\n".join(out)


@pytest.mark.parametrize(("provider", "variable"), [("http", "GENQUEUE_PROVIDER_TOKEN"), ("openai", "OPENAI_API_KEY")])
def test_a_credential_with_a_trailing_newline_stops_the_worker_at_start(env, provider, variable, provider_api):
    secret = "sk-" + os.urandom(12).hex()
    env.update(GENQUEUE_PROVIDER=provider, GENQUEUE_PROVIDER_URL=f"{provider_api.url}/generate")
    env.update({variable: secret + "\n", "OPENAI_BASE_URL": f"{provider_api.url}/v1"})
    r = run_cli(env, "worker", "--burst")
    assert r.code == 2, (r.code, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and variable in r.stderr, r.stderr
    assert secret not in r.stderr + r.stdout and "Traceback" not in r.stderr
    assert provider_api.seen == []


def test_a_token_echoed_in_a_long_error_body_is_nowhere(env, workers, conn, store, client, token, provider_api):
    secret = "sk-" + os.urandom(16).hex()
    env.update(
        GENQUEUE_PROVIDER="http", GENQUEUE_PROVIDER_URL=f"{provider_api.url}/generate", GENQUEUE_PROVIDER_TOKEN=secret
    )
    job = f"echo-{os.urandom(4).hex()}"
    # The token starts 490 characters into the body: cut to 500 before scrubbing, its first ten would stay.
    provider_api.script(job, Reply(400, {"error": "x" * 478 + secret + " was refused"}))
    retried = f"echo5-{os.urandom(4).hex()}"
    provider_api.script(retried, Reply(503, {"detail": "y" * 470 + "Bearer " + secret}), Reply(200, {"ok": 1}))
    w = workers(simple=True)
    for job_id in (job, retried):
        r = run_cli(env, "enqueue", "--payload", json.dumps({"prompt": "p", "model": "m1"}), "--job-id", job_id)
        assert r.code == 0, r.stderr
    wait_for(lambda: store.exists(job), 40, message="the refused job dead-lettered")
    wait_for(
        lambda: run_cli(env, "jobs", "show", retried, "--json").json()["status"] == "finished",
        40,
        message="the retried job to finish",
    )
    assert all(s.headers["authorization"] == f"Bearer {secret}" for s in provider_api.seen)
    entry = store.get(job)
    assert "***" in entry["error"]["message"]

    api = client.get(f"/api/jobs/{job}", headers=token("ops", admin=True))
    assert api.status_code == 200
    api_retried = client.get(f"/api/jobs/{retried}", headers=token("ops", admin=True))
    exported = run_cli(env, "dlq", "export", "--include-secrets")
    assert exported.code == 0, exported.stderr
    prefix = secret[:10]  # "sk-" and 7 random characters: no part of the token survives anywhere
    for where, text in (
        ("redis", everything_in_redis(conn)),
        ("worker log", w.log()),
        ("GET /api/jobs", api.text + api_retried.text),
        ("dlq export", exported.stdout),
    ):
        assert prefix not in text, where
    assert w.alive()
