"""The dashboard's job page, live, in a real Chromium against a real `genqueue api` process and real workers:
its EventSource reads every event of a job that parks behind a limit, progresses, retries and finishes, in
order and once each, across an API restart in the middle (the browser resumes with Last-Event-ID by
itself); and a tenant enqueues a generation job with the dashboard's New job form, watches its progress
bar move and cancels it with the page's button (the job ends `canceled` once; a second, stale Cancel is told
it already finished)."""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest

from genqueue.jobs.events import read
from genqueue.jobs.status import job_status
from genqueue.tasks.catalogue import read as read_catalogue
from tests.api.conftest import api_config, token  # noqa: F401 - fixtures reused here
from tests.helpers import run_cli, wait_for

DEADLINE_MS = 60_000  # a loaded machine: generous, every wait is on a state, never a fixed time

TASKS = '''
import os
import time

import redis

import genqueue
from genqueue import TransientError

R = redis.Redis.from_url(os.environ["GQ_TEST_REDIS"])


def gate(key, ctx=None):
    """Wait for the test's go (a Redis key): the test decides when the task moves on, no sleeps to sync."""
    while not R.exists(key) and not (ctx is not None and ctx.cancelled):
        time.sleep(0.02)


@genqueue.task(limit_key="live-TAG", limits={"concurrency": 1}, policy={"TRANSIENT": {"max": 3, "base": 0.05}})
def gated(run: str, role: str = "watched") -> dict:
    """The holder keeps the limit's one slot until `run:go`; the watched job parks behind it, then reports
    progress, fails once (TRANSIENT: a retry), reports again and finishes at `run:finish`."""
    ctx = genqueue.current()
    if role == "holder":
        gate(run + ":go")
        return {"held": True}
    ctx.progress(ctx.attempt / 4, f"attempt {ctx.attempt}")
    if ctx.attempt == 1:
        raise TransientError("503 upstream busy")
    gate(run + ":finish")
    return {"url": "https://cdn.example/" + run + ".png"}


@genqueue.task(api=True, max_retries=0)
def render(run: str, steps: int = 4) -> dict:
    """A generation: one progress step per go from the test (`run:step:N`), then it waits to be canceled."""
    ctx = genqueue.current()
    for i in range(1, steps + 1):
        if i > 1:
            gate(f"{run}:step:{i}", ctx)
            time.sleep(0.3)  # the task's own pace: past progress's 4-writes-a-second throttle, every step is written
        if ctx.cancelled:
            return {"stopped_at": i}
        ctx.progress(i / steps, f"step {i}/{steps}", {"preview": f"https://cdn.example/{run}-{i}.png"})
    gate(run + ":never", ctx)
    return {"url": "https://cdn.example/" + run + ".png"}
'''


@pytest.fixture
def lab(tmp_path, env, api_env, server):
    tag = uuid.uuid4().hex[:8]
    name = f"livepage_{tag}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS.replace("TAG", tag)))
    for e in (env, api_env):  # the workers' and the API's (which imports nothing of it: the catalogue says)
        e["PYTHONPATH"] = f"{tmp_path}:{e['PYTHONPATH']}"
        e["GQ_TEST_REDIS"] = server[0]
    return name


def login(browser, env, api, *args: str):
    r = run_cli(env, "api", "token", *args, "--login", "--url", api.url)
    assert r.code == 0, r.stderr
    context = browser.new_context(viewport={"width": 1180, "height": 900})
    context.set_default_timeout(DEADLINE_MS)
    tab = context.new_page()
    tab.goto(r.stdout.strip().splitlines()[-1])
    return context, tab


def shown_events(tab) -> list[tuple[str, str]]:
    """(event id, name) of every row the page's script added, in the order it added them."""
    return tab.eval_on_selector_all("#events tbody tr", "rows => rows.map(r => [r.dataset.id, r.dataset.event])")


def rows_include(tab, name: str, count: int = 1) -> None:
    tab.wait_for_function(
        "([name, count]) => document.querySelectorAll(`#events tbody tr[data-event='${name}']`).length >= count",
        arg=[name, count],
        timeout=DEADLINE_MS,
    )


def test_job_page_reads_every_event_in_order_across_a_reconnect(
    browser, api_process, api_env, conn, settings, lab, workers
):
    run = f"run-{uuid.uuid4().hex[:8]}"
    workers(extra=("--concurrency", "2", "--tasks", lab))
    holder = conn_enqueue(conn, settings, f"{lab}.gated", {"run": run, "role": "holder"})
    wait_for(lambda: "started" in names(conn, holder), timeout=60, message="the holder to start")
    job_id = conn_enqueue(conn, settings, f"{lab}.gated", {"run": run})
    wait_for(lambda: "parked" in names(conn, job_id), timeout=60, message="the job to park behind the holder")

    api = api_process()
    context, tab = login(browser, api_env, api, "--sub", "ops", "--admin")
    tab.goto(f"{api.url}/ui/jobs?id={job_id}")
    rows_include(tab, "parked")
    assert tab.locator("#job-status").inner_text() == "parked"
    assert tab.locator("#cancel button").is_visible()

    api.proc.kill()  # the connection drops in the middle; the job goes on while nobody listens
    api.proc.wait(15)
    conn.set(f"{run}:go", 1)  # the holder ends: the job wakes, progresses, fails once, is retried, progresses
    wait_for(lambda: names(conn, job_id).count("progress") >= 2, timeout=60, message="the retry's progress")
    api = api_process(port=api.port)  # the same address: EventSource reconnects with Last-Event-ID by itself
    rows_include(tab, "progress", 2)
    assert tab.locator("#job-status").inner_text() == "running"
    assert "50%" in tab.locator("#progress-text").inner_text()
    conn.set(f"{run}:finish", 1)
    rows_include(tab, "finished")
    tab.wait_for_function("document.getElementById('live-state').textContent.includes('ended')")

    stored = [[e.id, e.event] for e in read(conn, job_id)]
    assert shown_events(tab) == stored  # every event once, in order: nothing lost, nothing twice
    seen = [name for _, name in stored]
    milestones = [e for e in seen if e in ("enqueued", "parked", "woken", "started", "retry_scheduled", "finished")]
    assert milestones[:3] == ["enqueued", "parked", "woken"], seen
    assert [e for e in milestones if e in ("started", "retry_scheduled", "finished")] == [
        "started",
        "retry_scheduled",
        "started",
        "finished",
    ], seen
    assert tab.locator("#job-status").inner_text() == "finished"
    assert run in tab.locator("#job-result").inner_text()
    assert tab.locator("#cancel").is_hidden()  # nothing left to cancel
    context.close()


def test_a_tenant_enqueues_watches_progress_and_cancels_from_the_page(
    browser,
    api_process,
    api_env,
    conn,
    settings,
    lab,
    workers,
):
    run = f"run-{uuid.uuid4().hex[:8]}"
    workers(extra=("--tasks", lab))
    api = api_process()
    wait_for(lambda: f"{lab}.render" in read_catalogue(conn), timeout=60, message="the worker's catalogue")
    context, tab = login(browser, api_env, api, "--sub", "alice", "--tenant", "acme")
    tab.goto(f"{api.url}/ui/")
    tab.click("text=Enqueue a new job")  # the dashboard's New job form, linked from the overview
    tab.select_option("#new-job select[name=task]", f"{lab}.render")  # open to the API: listed for a tenant
    tab.fill("#new-job textarea[name=payload]", json.dumps({"run": run}))
    tab.click("#new-job button")
    tab.wait_for_url("**/ui/jobs?id=*")  # the 303 to the job's live page
    job_id = tab.locator("#live").get_attribute("data-job")
    assert job_id and tab.url.endswith(f"?id={job_id}")
    assert job_status(conn, None, job_id)["tenant"] == "acme"  # the session's tenant
    rows_include(tab, "progress")
    assert tab.locator("#progress-text").inner_text() == "25% · step 1/4"
    stale = context.new_page()  # a second tab on the same job, left open: its Cancel will come too late
    stale.goto(f"{api.url}/ui/jobs?id={job_id}")
    conn.set(f"{run}:step:2", 1)
    rows_include(tab, "progress", 2)  # the bar moves live, without a reload
    assert tab.locator("#progress-text").inner_text() == "50% · step 2/4"
    assert tab.locator("#job-status").inner_text() == "running"
    assert tab.eval_on_selector("#progress-fill", "el => el.style.width") == "50%"

    # Another tenant can neither watch nor cancel it.
    other, other_tab = login(browser, api_env, api, "--sub", "bob", "--tenant", "other")
    assert other_tab.goto(f"{api.url}/ui/jobs/{job_id}/events").status in (403, 404)
    other_tab.goto(f"{api.url}/ui/")
    csrf = other_tab.eval_on_selector("header input[name=csrf]", "el => el.value")
    refused = other_tab.request.post(f"{api.url}/ui/jobs/{job_id}/cancel", form={"csrf": csrf})
    assert refused.status in (403, 404) and job_status(conn, None, job_id)["status"] == "running"
    assert tab.request.post(f"{api.url}/ui/jobs/{job_id}/cancel", form={}).status == 403  # no CSRF token
    other.close()

    tab.screenshot(path="/tmp/livepage.png", full_page=True)
    tab.fill("#cancel input[name=reason]", "closed the tab")
    tab.once("dialog", lambda dialog: dialog.accept())
    tab.click("#cancel button")
    assert "was running" in tab.locator("#notice").inner_text()
    rows_include(tab, "canceled")  # the stream's terminal event, live on the page that came back
    assert tab.locator("#job-status").inner_text() == "canceled"
    wait_for(lambda: job_status(conn, None, job_id)["status"] == "canceled", timeout=60, message="canceled")
    assert names(conn, job_id).count("canceled") == 1 and "finished" not in names(conn, job_id)
    assert "closed the tab" in tab.locator("#cancel-record").inner_text()
    tab.screenshot(path="/tmp/livepage-canceled.png", full_page=True)

    stale.evaluate("document.getElementById('cancel').submit()")  # its form, even if the stream retired it
    stale.wait_for_load_state()
    assert "already canceled" in stale.locator("#notice").inner_text()
    assert names(conn, job_id).count("canceled") == 1  # idempotent: no second outcome
    cancels = [a for a in audit_entries(conn) if job_id in str(a) and a["action"] == "api_job_cancel"]
    assert len(cancels) == 1 and cancels[0]["who"].endswith("via /ui")  # the repeat is not audited again
    enqueues = [a for a in audit_entries(conn) if job_id in str(a) and a["action"] == "api_enqueue"]
    assert len(enqueues) == 1 and enqueues[0]["who"].startswith("alice (tenant acme)")
    assert enqueues[0]["who"].endswith("via /ui")  # enqueued by the page, audited as the API's enqueues are
    context.close()


def test_cancel_of_a_finished_job_says_so(browser, api_process, api_env, conn, settings, lab, workers):
    run = f"run-{uuid.uuid4().hex[:8]}"
    api = api_process()
    job_id = conn_enqueue(conn, settings, f"{lab}.gated", {"run": run, "role": "holder"})
    context, tab = login(browser, api_env, api, "--sub", "ops", "--admin")
    tab.goto(f"{api.url}/ui/jobs?id={job_id}")
    rows_include(tab, "enqueued")
    conn.set(f"{run}:go", 1)
    workers(extra=("--tasks", lab))
    wait_for(lambda: job_status(conn, None, job_id)["status"] == "finished", timeout=60, message="finished")
    tab.evaluate("document.getElementById('cancel').submit()")  # a tab opened before it finished
    tab.wait_for_load_state()
    assert "already finished" in tab.locator("#failure").inner_text()
    assert tab.locator("#job-status").inner_text() == "finished" and tab.locator("#cancel").count() == 0
    context.close()


def conn_enqueue(conn, settings, name: str, kwargs: dict) -> str:
    from genqueue.jobs.enqueue import enqueue_task

    return enqueue_task(conn, settings.queue, name, kwargs, check=False).job.id


def names(conn, job_id: str) -> list[str]:
    return [e.event for e in read(conn, job_id)]


def audit_entries(conn) -> list[dict]:
    from genqueue.backend import audit

    return audit.recent(conn, 100)
