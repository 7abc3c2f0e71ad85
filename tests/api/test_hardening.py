"""Hostile or unusual input through HTTP: every refusal is the error envelope with its status, and a refused
request leaves nothing behind in Redis."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.api.test_auth import error


def nested_payload(depth: int) -> str:
    """A valid payload's JSON text whose objects and arrays nest `depth` levels (the payload is level 1)."""
    arrays = depth - 2
    return '{"prompt": "x", "params": {"a": ' + "[" * arrays + "]" * arrays + "}}"


def rq_jobs(conn) -> int:
    return sum(1 for _ in conn.scan_iter("rq:job:*", count=1000))


@pytest.mark.parametrize("depth", [65, 800, 5000, 100_000])
def test_deeply_nested_json_is_400_everywhere_and_stores_nothing(client, token, conn, settings, depth):
    h = {**token(), "content-type": "application/json"}
    payload = nested_payload(depth)
    before = rq_jobs(conn)
    run_id = f"deep-{uuid.uuid4().hex[:8]}"
    bodies = [("application/json", '{"run_id": "%s", "items": [%s]}' % (run_id, payload)),
              ("application/json", "[" + payload + "]"),
              ("application/x-ndjson", '{"prompt": "fine"}\n' + payload)]
    for content_type, body in bodies:
        r = client.post(f"/api/runs?run_id={run_id}", headers={**h, "content-type": content_type}, content=body)
        error(r, 400, "VALIDATION_ERROR")
    job_id = f"deep-job-{uuid.uuid4().hex[:8]}"
    error(client.post("/api/jobs", headers=h, content='{"job_id": "%s", "payload": %s}' % (job_id, payload)),
          400, "VALIDATION_ERROR")
    assert client.get(f"/api/runs/{run_id}", headers=h).status_code == 404
    assert client.get(f"/api/jobs/{job_id}", headers=h).status_code == 404
    assert conn.llen(f"rq:queue:{settings.queue}") == 0 and rq_jobs(conn) == before


def test_nesting_up_to_the_limit_is_accepted(client, token):
    from genqueue.tasks.generate import MAX_PAYLOAD_DEPTH

    payload = nested_payload(MAX_PAYLOAD_DEPTH)
    assert json.loads(payload)  # the fixture itself is valid JSON
    r = client.post("/api/runs", headers={**token(), "content-type": "application/x-ndjson"}, content=payload)
    assert r.status_code == 201, r.text
    r = client.post("/api/jobs", headers={**token(), "content-type": "application/json"},
                    content='{"payload": %s}' % payload)
    assert r.status_code == 201, r.text
