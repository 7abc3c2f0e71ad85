"""GET /metrics after real workers ran known outcomes: every number equals what the queues, the registries
and the DLQ hold; the token, when configured, is required."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from genqueue.jobs.enqueue import enqueue
from tests.api.test_jobs_api import drain
from tests.helpers import wait_for


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_equal_the_state_they_describe(client, token, conn, settings, env, store):
    q = settings.queue
    for i in range(3):
        enqueue(conn, q, {"prompt": f"p{i}", "simulate": ["401"]})
    enqueue(conn, q, {"prompt": "fine"})
    drain(env)
    enqueue(conn, q, {"prompt": "waiting"})  # stays queued: no worker now
    client.get("/api/jobs/nope", headers=token())
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = samples(r.text)
    assert m[("genqueue_queue_depth", (("queue", q), ("state", "queued")))] == 1
    assert m[("genqueue_queue_depth", (("queue", q), ("state", "started")))] == 0
    assert m[("genqueue_dlq_entries", (("queue", q),))] == store.count() == 3
    assert m[("genqueue_dead_lettered_total", (("kind", "PERMANENT"), ("queue", q), ("reason", "non_retryable")))] == 3
    assert m[("genqueue_jobs_finished_total", (("queue", q),))] == 1
    task = (("outcome", "dead"), ("queue", q), ("task", "genqueue.jobs.generate"))
    assert m[("genqueue_task_attempts_total", task)] == 3  # labelled by task
    assert m[("genqueue_attempts_failed_total", (("kind", "PERMANENT"), ("queue", q)))] == 3
    assert m[("genqueue_dlq_replays_total", (("outcome", "replayed"), ("queue", q)))] == 0
    assert m[("genqueue_jobs_enqueued_total", (("queue", q),))] == 5
    assert m[("genqueue_dlq_oldest_age_seconds", (("queue", q),))] >= 0
    assert m[("genqueue_workers_alive", (("queue", q),))] == 0  # the burst worker has exited
    assert m[("genqueue_api_requests_total", (("route", "/api/jobs/{job_id}"), ("status", "404")))] >= 1
    admin = token("ops", admin=True)
    [entry] = client.get("/api/dlq?limit=1", headers=admin).json()["data"]
    assert client.post(f"/api/dlq/{entry['job_id']}/retry", headers=admin).status_code == 200
    assert client.post(f"/api/dlq/{entry['job_id']}/retry", headers=admin).status_code == 409  # a second click
    m = samples(client.get("/metrics").text)
    assert m[("genqueue_dlq_replays_total", (("outcome", "replayed"), ("queue", q)))] == 1
    assert m[("genqueue_dlq_replays_total", (("outcome", "gone"), ("queue", q)))] == 1
    assert m[("genqueue_jobs_enqueued_total", (("queue", q),))] == 5  # a replay is not a new job
    assert m[("genqueue_dlq_entries", (("queue", q),))] == 2
    assert m[("genqueue_queue_depth", (("queue", q), ("state", "queued")))] == 2


def test_metrics_token(settings, conn):
    from fastapi.testclient import TestClient

    from genqueue.api.app import create_app
    from genqueue.api.config import ApiConfig
    from tests.api.conftest import SECRET

    config = ApiConfig("HS256", SECRET, SECRET, True, metrics_token="scrape-me")
    with TestClient(create_app(settings, config, conn)) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).json()["error"]["code"] == "UNAUTHORIZED"
        assert c.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200


def test_limit_metrics_follow_each_keys_state(client, conn, limited_keys):
    """A key holding its one slot with two jobs parked behind it, and a key paused by a 429: the limit
    families say so, and equal what the limits store describes."""
    from genqueue.limits.store import describe

    m = samples(client.get("/metrics").text)
    held, paused = (("key", limited_keys.held),), (("key", limited_keys.paused),)
    assert m[("genqueue_limit_in_flight", held)] == 1 and m[("genqueue_limit_parked", held)] == 2
    assert m[("genqueue_limit_throttled_total", held)] == 2 and m[("genqueue_limit_rate_limited_total", held)] == 0
    assert m[("genqueue_limit_rate_limited_total", paused)] == 1 and m[("genqueue_limit_parked", paused)] == 0

    def state(key):
        return {
            s: m[("genqueue_limit_state", (("key", key), ("state", s)))]
            for s in ("closed", "paused", "open", "half-open")
        }

    assert state(limited_keys.held) == {"closed": 1, "paused": 0, "open": 0, "half-open": 0}
    assert state(limited_keys.paused) == {"closed": 0, "paused": 1, "open": 0, "half-open": 0}
    for row in describe(conn, limited_keys.held) + describe(conn, limited_keys.paused):
        label = (("key", row["key"]),)
        assert m[("genqueue_limit_paused_total", label)] == row["counters"].get("paused", 0)
        assert m[("genqueue_limit_in_flight", label)] == row["in_flight"]
        assert m[("genqueue_limit_breaker_opens_total", label)] == row["counters"].get("breaker_opens", 0) == 0
        assert ("genqueue_limit_held_total", label) not in m  # exported from the first one on
    conn.set(limited_keys.release, 1)  # the holder ends and its release wakes the parked jobs, one at a time

    def drained():
        now = samples(client.get("/metrics").text)
        return now[("genqueue_limit_parked", held)] == 0 and now[("genqueue_limit_in_flight", held)] == 0

    wait_for(drained, message="the parked jobs to run once the holder released its slot")
