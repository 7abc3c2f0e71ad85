"""The dashboard's New job form (in-process, no worker: jobs stay queued): `GET /ui/jobs/new` and
`POST /ui/jobs` enqueue as the API does (same call, tenant and audit) behind the session and its CSRF token;
bad input shows the form again with one line, success is a 303 to the job's live page."""

from __future__ import annotations

from genqueue.backend import audit
from genqueue.jobs.status import job_status
from tests.api.test_hardening import ui_login


def enqueues(conn, settings) -> list[dict]:
    return [a for a in audit.recent(conn, 100) if a["action"] == "api_enqueue" and a["queue"] == settings.queue]


def test_the_form_needs_a_session_and_its_csrf_token(client, conn, settings):
    assert client.get("/ui/jobs/new").status_code == 401
    csrf = ui_login(client, conn, "alice", tenant="acme")
    page = client.get("/ui/jobs/new")
    assert page.status_code == 200 and 'action="/ui/jobs"' in page.text and csrf in page.text
    assert '<option value="generate"' in page.text
    assert 'href="/ui/jobs/new"' in client.get("/ui/").text  # linked from the nav and the overview
    refused = client.post("/ui/jobs", data={"task": "generate", "payload": '{"prompt": "a fox"}'})
    assert refused.status_code == 403 and "CSRF" in refused.text


def test_a_job_is_enqueued_as_the_sessions_tenant_and_audited(client, conn, settings):
    csrf = ui_login(client, conn, "alice", tenant="acme")
    r = client.post(
        "/ui/jobs",
        data={"csrf": csrf, "task": "generate", "payload": '{"prompt": "a fox"}', "priority": "high"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/jobs?id=")
    job_id = r.headers["location"].split("=", 1)[1]
    info = job_status(conn, None, job_id)
    assert info["status"] == "queued" and info["tenant"] == "acme"
    assert info["payload"]["prompt"] == "a fox"
    audited = enqueues(conn, settings)  # the API's audit record, the dashboard's actor
    assert len(audited) == 1 and job_id in str(audited[0]) and audited[0]["who"].startswith("alice (tenant acme)")
    assert audited[0]["who"].endswith("via /ui")
    page = client.get(r.headers["location"])
    assert page.status_code == 200 and "job-live.js" in page.text and 'id="cancel"' in page.text


def test_bad_input_shows_the_form_again_with_one_line(client, conn, settings):
    csrf = ui_login(client, conn, "alice", tenant="acme")
    cases = [
        ({"payload": "{not json"}, "payload:"),
        ({"payload": "[1, 2]"}, "JSON object"),
        ({"payload": '{"prompt": "x"}', "priority": "urgent"}, "priority"),
        ({"payload": '{"model": "m"}'}, "Not enqueued"),  # no prompt: the generate payload's own check
        ({"task": "nobody.knows", "payload": "{}"}, "Not enqueued"),
    ]
    for fields, said in cases:
        r = client.post("/ui/jobs", data={"csrf": csrf, "task": "generate", **fields}, follow_redirects=False)
        assert r.status_code in (400, 404), (fields, r.status_code, r.text)
        assert 'id="failure"' in r.text and said in r.text and 'id="new-job"' in r.text, fields
        assert fields["payload"].replace('"', "&#34;") in r.text  # what was typed is kept
        assert not enqueues(conn, settings), fields
