"""The dashboard's live job page behind its session (in-process, no worker: jobs stay queued): the page's
event stream (`/ui/jobs/{id}/events`) and its Cancel (`POST /ui/jobs/{id}/cancel`) — tenant-checked, CSRF
-checked, resumable with Last-Event-ID, audited once; the browser tests drive the same with workers."""

from __future__ import annotations

from genqueue.backend import audit
from genqueue.jobs.events import read
from genqueue.jobs.status import job_status
from tests.api.test_hardening import ui_login
from tests.integration.jobs.test_live import sse_events


def enqueue_as(client, token, tenant: str) -> str:
    r = client.post("/api/jobs", json={"payload": {"prompt": "a fox"}}, headers=token(tenant, tenant=tenant))
    assert r.status_code == 201, r.text
    return r.json()["data"]["id"]


def test_the_page_stream_and_cancel_are_the_owners(client, conn, token):
    job_id = enqueue_as(client, token, "acme")
    assert client.get(f"/ui/jobs/{job_id}/events").status_code == 401  # no session yet

    ui_login(client, conn, "bob", tenant="other")
    assert client.get(f"/ui/jobs/{job_id}/events").status_code == 403
    csrf = ui_login(client, conn, "bob", tenant="other")
    r = client.post(f"/ui/jobs/{job_id}/cancel", data={"csrf": csrf})
    assert r.status_code == 403 and job_status(conn, None, job_id)["status"] == "queued"

    csrf = ui_login(client, conn, "alice", tenant="acme")
    page = client.get(f"/ui/jobs?id={job_id}")
    assert page.status_code == 200 and 'id="cancel"' in page.text and "job-live.js" in page.text
    assert client.post(f"/ui/jobs/{job_id}/cancel", data={}).status_code == 403  # no CSRF token
    r = client.post(f"/ui/jobs/{job_id}/cancel", data={"csrf": csrf, "reason": "wrong prompt"})
    assert r.status_code == 200 and "was queued" in r.text and 'id="cancel"' not in r.text
    again = client.post(f"/ui/jobs/{job_id}/cancel", data={"csrf": csrf})
    assert again.status_code == 200 and "already canceled" in again.text
    cancels = [a for a in audit.recent(conn, 50) if a["action"] == "api_job_cancel" and job_id in str(a)]
    assert len(cancels) == 1 and cancels[0]["who"].endswith("via /ui") and "wrong prompt" in cancels[0]["note"]

    with client.stream("GET", f"/ui/jobs/{job_id}/events") as stream:  # ended: the backlog, then it closes
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        got = sse_events(stream)
    assert [i for i, _, _ in got] == [e.id for e in read(conn, job_id)] and got[-1][1] == "canceled"
    with client.stream("GET", f"/ui/jobs/{job_id}/events", headers={"Last-Event-ID": got[0][0]}) as stream:
        assert [i for i, _, _ in sse_events(stream)] == [i for i, _, _ in got[1:]]  # after it, nothing twice
    assert client.get(f"/ui/jobs/{job_id}/events", headers={"Last-Event-ID": "yesterday"}).status_code == 400


def test_cancel_of_an_unknown_job_says_so(client, conn):
    csrf = ui_login(client, conn, "ops", admin=True)
    r = client.post("/ui/jobs/no-such-job/cancel", data={"csrf": csrf})
    assert r.status_code == 404 and "Not canceled" in r.text
