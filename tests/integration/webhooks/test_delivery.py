"""Completion webhooks end to end: real workers (one on the job's queue, one on the webhook queue), the real
server, and a local receiver (http.server in a thread) that verifies every signature with the
`standardwebhooks` library. Delivered once per event; 503 three times then 200 is delivered on the 4th try;
410 dead-letters the delivery (replayable); a private address is refused at enqueue (CLI and HTTP)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from genqueue.api.metrics import read as read_metrics
from genqueue.backend import keys
from genqueue.dlq.store import DLQStore
from genqueue.jobs.enqueue import enqueue
from genqueue.jobs.status import job_status
from genqueue.webhooks.relay import delivery_id
from tests.helpers import WorkerProcess, run_cli, wait_for

SECRET = "whsec_" + base64.b64encode(b"webhook-test-secret-32-bytes-long").decode()
DEADLINE_S = 60


class Receiver:
    """Answers by path: /ok 200; /flaky 503 three times, then 200; /gone 410 (until `gone` is cleared)."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        self.gone = True
        self.secret = SECRET
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    event = Webhook(receiver.secret).verify(body, headers)
                except Exception as exc:  # noqa: BLE001 - recorded, and the test asserts none
                    event = {"unverified": str(exc)}
                path = self.path.split("?", 1)[0]
                with receiver.lock:
                    receiver.calls.append({"path": path, "headers": headers, "event": event})
                    tries = sum(1 for c in receiver.calls if c["path"] == path)
                if path == "/flaky" and tries <= 3:
                    status = 503
                elif path == "/gone" and receiver.gone:
                    status = 410
                else:
                    status = 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def at(self, path: str) -> list[dict]:
        with self.lock:
            return [c for c in self.calls if c["path"] == path]


@pytest.fixture
def receiver():
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def hooks(env, queue_name, monkeypatch, request):
    """The test's webhook queue, its settings in the environment (this process's enqueues read the allow-list),
    and a worker on each queue."""
    wh_queue = f"{queue_name}-wh"
    settings = {
        "GENQUEUE_WEBHOOK_SECRET": SECRET,
        "GENQUEUE_WEBHOOK_ALLOW": "*,127.0.0.1",
        "GENQUEUE_WEBHOOK_QUEUE": wh_queue,
    }
    env.update(settings)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    started = [WorkerProcess(env, queue_name), WorkerProcess(env, wh_queue)]
    yield wh_queue
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
    for w in started:
        w.stop()
        if failed:
            print(f"--- {w.log_path} ---\n{w.log()[-4000:]}")


def test_each_subscribed_event_is_delivered_once_signed(conn, settings, store, receiver, hooks):
    url = f"{receiver.url}/ok?token=s3cret-query-token"
    job = enqueue(conn, settings.queue, {"prompt": "a fox"}, webhook=url, webhook_events=["started", "finished"])
    shown = job_status(conn, store, job.id)["webhook"]
    assert shown == {"url": f"{receiver.url}/ok?token=***", "events": ["started", "finished"]}
    wait_for(lambda: len(receiver.at("/ok")) >= 2, DEADLINE_S, message="two deliveries")
    calls = receiver.at("/ok")
    events = sorted(c["event"]["event"] for c in calls)
    assert events == ["finished", "started"], calls
    assert all("unverified" not in c["event"] for c in calls)
    assert all(c["event"]["job_id"] == job.id for c in calls)
    assert len({c["headers"]["webhook-id"] for c in calls}) == 2
    for c in calls:  # webhook-id is the job and its event's id in the job's stream
        assert c["headers"]["webhook-id"] == f"{job.id}:{c['event']['id']}"
    # once: every delivery job finished, the subscription is gone, and nothing more arrives
    wh_store = DLQStore(conn, hooks, retention_s=60)
    for c in calls:
        wid = delivery_id(job.id, c["event"]["id"])
        wait_for(lambda wid=wid: job_status(conn, wh_store, wid)["status"] == "finished", DEADLINE_S, message=wid)
    wait_for(lambda: not conn.hexists(keys.WEBHOOK_SUBS, job.id), DEADLINE_S, message="the subscription to end")
    assert len(receiver.at("/ok")) == 2


def test_503_three_times_then_200_is_delivered_on_the_fourth_try(conn, settings, store, receiver, hooks):
    job = enqueue(conn, settings.queue, {"prompt": "a fox"}, webhook=f"{receiver.url}/flaky")
    wait_for(lambda: len(receiver.at("/flaky")) >= 4, DEADLINE_S, message="four tries")
    calls = receiver.at("/flaky")
    assert [c["event"]["event"] for c in calls] == ["finished"] * 4
    assert len({c["headers"]["webhook-id"] for c in calls}) == 1  # the same message on every retry
    wid = delivery_id(job.id, calls[0]["event"]["id"])
    wh_store = DLQStore(conn, hooks, retention_s=60)
    info = wait_for(
        lambda: (i := job_status(conn, wh_store, wid))["status"] == "finished" and i, DEADLINE_S, message="delivered"
    )
    assert info["attempts"] == 4
    assert [h.get("kind") for h in info["history"] if h.get("kind")] == ["TRANSIENT"] * 3


def test_410_dead_letters_the_delivery_and_a_replay_delivers_it(conn, settings, store, env, receiver, hooks):
    job = enqueue(conn, settings.queue, {"prompt": "a fox"}, webhook=f"{receiver.url}/gone?sig=topsecret")
    wait_for(lambda: receiver.at("/gone"), DEADLINE_S, message="the first try")
    event_id = receiver.at("/gone")[0]["event"]["id"]
    wid = delivery_id(job.id, event_id)
    wh_store = DLQStore(conn, hooks, retention_s=60)
    info = wait_for(
        lambda: (i := job_status(conn, wh_store, wid))["status"] == "dead" and i, DEADLINE_S, message="dead-lettered"
    )
    assert len(receiver.at("/gone")) == 1  # PERMANENT: never retried
    assert "410" in info["last_error"]
    seen = read_metrics(conn, [hooks])[hooks]  # what GET /metrics reports for the webhook queue
    assert seen["dlq_entries"] == 1 and seen["counters"]["enqueued"] >= 1, seen
    shown = run_cli(env, "jobs", "show", wid, "--queue", hooks, "--json")
    assert shown.code == 0, shown.stderr
    assert "topsecret" not in shown.stdout and "sig=***" in shown.stdout
    receiver.gone = False
    replayed = run_cli(env, "dlq", "retry", wid, "--queue", hooks)
    assert replayed.code == 0, replayed.stderr
    wait_for(lambda: len(receiver.at("/gone")) == 2, DEADLINE_S, message="the replayed delivery")
    again = receiver.at("/gone")[1]
    assert again["headers"]["webhook-id"] == f"{job.id}:{event_id}" and "unverified" not in again["event"]
    logs = "".join(p.read_text(errors="replace") for p in Path(env["GENQUEUE_TEST_LOGDIR"]).glob("*.log"))
    assert "gone" in logs and "topsecret" not in logs  # the workers logged the delivery, never its secret


def test_a_private_address_is_refused_at_enqueue_cli_and_http(conn, settings, env, client, token, monkeypatch):
    monkeypatch.setenv("GENQUEUE_WEBHOOK_ALLOW", "*,127.0.0.1")
    env["GENQUEUE_WEBHOOK_ALLOW"] = "*,127.0.0.1"
    for url in ("https://10.0.0.1/hook", "https://169.254.169.254/latest", "http://example.com/hook"):
        r = run_cli(env, "enqueue", "--payload", '{"prompt": "x"}', "--webhook", url)
        assert r.code == 2, (url, r.stdout, r.stderr)
        assert r.stderr.count("\n") == 1 and "webhook" in r.stderr
        body = {"payload": {"prompt": "x"}, "webhook": url}
        response = client.post("/api/jobs", headers=token(tenant="a"), json=body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    bad_event = client.post(
        "/api/jobs",
        headers=token(tenant="a"),
        json={"payload": {"prompt": "x"}, "webhook": "http://127.0.0.1:9/h", "webhook_events": ["done"]},
    )
    assert bad_event.status_code == 400 and "unknown webhook event" in bad_event.json()["error"]["message"]


def test_a_tenant_sees_its_own_webhook_and_never_another_tenants(conn, settings, client, token, monkeypatch):
    monkeypatch.setenv("GENQUEUE_WEBHOOK_ALLOW", "*,127.0.0.1")
    body = {"payload": {"prompt": "x"}, "webhook": "http://127.0.0.1:9/hook?token=abc", "webhook_events": ["finished"]}
    created = client.post("/api/jobs", headers=token(tenant="a"), json=body)
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    assert data["webhook"] == {"url": "http://127.0.0.1:9/hook?token=***", "events": ["finished"]}
    other = client.get(f"/api/jobs/{data['id']}", headers=token("bob", tenant="b"))
    assert other.status_code in (403, 404) and "webhook" not in json.dumps(other.json().get("error", {}))


def test_a_tenant_with_its_own_secret_gets_deliveries_signed_with_it(conn, settings, env, receiver, hooks):
    tenant = f"acme-{settings.queue}"
    made = run_cli(env, "webhooks", "secret", tenant)
    assert made.code == 0, made.stderr
    receiver.secret = made.stdout.strip()
    assert receiver.secret.startswith("whsec_") and receiver.secret != SECRET
    try:
        enqueue(conn, settings.queue, {"prompt": "a fox"}, webhook=f"{receiver.url}/ok", tenant=tenant)
        wait_for(lambda: receiver.at("/ok"), DEADLINE_S, message="the delivery")
        call = receiver.at("/ok")[0]
        assert "unverified" not in call["event"], call  # verified with the tenant's secret, not the global one
        with pytest.raises(Exception, match="signature"):
            Webhook(SECRET).verify(b"{}", call["headers"])
    finally:
        assert run_cli(env, "webhooks", "secret", tenant, "--remove").code == 0
    assert not conn.hexists(keys.WEBHOOK_SECRETS, tenant)


def test_naming_another_tenants_job_id_never_subscribes_to_it(conn, settings, client, token, monkeypatch):
    monkeypatch.setenv("GENQUEUE_WEBHOOK_ALLOW", "*,127.0.0.1")
    job_id = f"mine-{settings.queue}"
    first = client.post("/api/jobs", headers=token(tenant="a"), json={"payload": {"prompt": "x"}, "job_id": job_id})
    assert first.status_code == 201, first.text
    body = {"payload": {"prompt": "x"}, "job_id": job_id, "webhook": "http://127.0.0.1:9/steal"}
    second = client.post("/api/jobs", headers=token("bob", tenant="b"), json=body)
    assert second.status_code == 403, second.text
    assert not conn.hexists(keys.WEBHOOK_SUBS, job_id)
    again = client.post("/api/jobs", headers=token(tenant="a"), json={**body, "webhook": "http://127.0.0.1:9/mine"})
    assert again.status_code == 200, again.text  # its own live job: subscribed from its enqueued event on
    assert conn.hexists(keys.WEBHOOK_SUBS, job_id)
