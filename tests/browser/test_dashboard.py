"""The dashboard in a real Chromium against a real `genqueue api` process and real workers: log in through
the one-time URL, load every page (screenshots under the test's tmp dir), filter the DLQ, replay an entry
(checked through the library), replay it again from a second tab, delete one, press Continue on a
partially failed run, and check that a POST without the CSRF token is refused."""

from __future__ import annotations

from genqueue.jobs.enqueue import enqueue
from genqueue.runs.store import submit
from tests.api.test_jobs_api import drain
from tests.helpers import run_cli


def login_url(env, api) -> str:
    r = run_cli(env, "api", "token", "--sub", "ops", "--admin", "--login", "--url", api.url)
    assert r.code == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def test_dashboard_end_to_end(browser, api_process, api_env, conn, settings, store, tmp_path):
    q = settings.queue
    dead = [
        enqueue(
            conn,
            q,
            {"prompt": f"p{i}", "api_key": "sk-secret", "user_id": f"u{i}", "simulate": ["401" if i < 3 else "422"]},
        ).job.id
        for i in range(4)
    ]
    run_id = submit(
        conn, q, [{"prompt": "a"}, {"prompt": "b", "simulate": ["500"]}], ttl_s=3600, max_retries=0, run_id=f"ui-{q}"
    ).run.run_id
    drain(api_env)
    api = api_process()
    shots = tmp_path / "screens"
    shots.mkdir()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()

    tab.goto(login_url(api_env, api))
    assert tab.url.endswith("/ui/") and tab.locator("#dlq-size").inner_text() == "5"  # 4 jobs + 1 run item
    tab.screenshot(path=str(shots / "overview.png"), full_page=True)
    assert tab.goto(login_url(api_env, api).replace("code=", "code=x")).status == 401  # unknown code

    tab.goto(f"{api.url}/ui/dlq")
    tab.select_option("select[name=kind]", "PERMANENT")
    tab.fill("input[name=user]", "u1")
    tab.click("text=Filter")
    rows = tab.locator("#entries tr")
    assert rows.count() == 2 and dead[1] in rows.nth(1).inner_text()  # header + u1's entry
    tab.screenshot(path=str(shots / "dlq.png"), full_page=True)

    tab.goto(f"{api.url}/ui/dlq/{dead[0]}")
    assert "sk-secret" not in tab.content() and '"***"' in tab.locator("#payload").inner_text()
    tab.screenshot(path=str(shots / "entry.png"), full_page=True)
    second = context.new_page()
    second.goto(f"{api.url}/ui/dlq/{dead[0]}")  # the same entry, open in a second tab
    tab.fill("#replay textarea", '{"model": "v2"}')
    tab.click("#replay button")
    assert '"model": "v2"' in tab.locator("#after").inner_text()  # the diff, before anything changes
    tab.screenshot(path=str(shots / "replay-diff.png"), full_page=True)
    assert store.exists(dead[0])
    tab.click("#confirm")
    assert "queued again" in tab.locator("#message").inner_text()
    assert not store.exists(dead[0]) and conn.hget(f"rq:job:{dead[0]}", "status") == b"queued"
    second.click("#replay button")
    assert "already replayed" in second.locator("#message").inner_text()
    second.screenshot(path=str(shots / "replay-again.png"), full_page=True)

    tab.goto(f"{api.url}/ui/dlq/{dead[3]}")
    tab.once("dialog", lambda dialog: dialog.accept())
    tab.click("#delete button")
    assert "deleted" in tab.locator("#message").inner_text() and not store.exists(dead[3])

    tab.goto(f"{api.url}/ui/runs?id={run_id}")
    assert tab.locator("#run-status").inner_text() == "partially_failed" and "2 of 2 done" in tab.content()
    tab.screenshot(path=str(shots / "run.png"), full_page=True)
    tab.click("#continue")
    assert "unlimited" in tab.locator("#cost").inner_text()
    tab.screenshot(path=str(shots / "continue.png"), full_page=True)
    tab.click("#confirm")
    assert "1 item(s) retried (1 charged" in tab.locator("#notice").inner_text()
    assert conn.hget(f"rq:job:{run_id}-item-1", "status") == b"queued"

    tab.goto(f"{api.url}/ui/jobs?id={dead[1]}")
    assert tab.locator("#job-status").inner_text() == "dead"
    tab.screenshot(path=str(shots / "job.png"), full_page=True)

    refused = tab.request.post(f"{api.url}/ui/dlq/{dead[2]}/delete", form={})  # the session cookie, no token
    assert refused.status == 403 and store.exists(dead[2])
    phone = browser.new_context(viewport={"width": 390, "height": 844}, storage_state=context.storage_state())
    small = phone.new_page()
    small.goto(f"{api.url}/ui/")
    small.screenshot(path=str(shots / "overview-phone.png"), full_page=True)
    assert sorted(p.name for p in shots.iterdir()) == sorted(
        [
            "overview.png",
            "dlq.png",
            "entry.png",
            "replay-diff.png",
            "replay-again.png",
            "run.png",
            "continue.png",
            "job.png",
            "overview-phone.png",
        ]
    )
    print(f"\nscreenshots: {shots}")


def test_pages_need_a_session_and_tenants_see_only_their_own(browser, api_process, api_env, conn, settings):
    api = api_process()
    anonymous = browser.new_page()
    assert anonymous.goto(f"{api.url}/ui/").status == 401
    assert anonymous.goto(f"{api.url}/ui/dlq").status == 401
    run_id = submit(
        conn, settings.queue, [{"prompt": "a"}], ttl_s=3600, run_id=f"mine-{settings.queue}", tenant="acme"
    ).run.run_id
    r = run_cli(api_env, "api", "token", "--sub", "bob", "--tenant", "other", "--login", "--url", api.url)
    user = browser.new_page()
    user.goto(r.stdout.strip().splitlines()[-1])
    assert user.goto(f"{api.url}/ui/dlq").status == 403
    assert user.goto(f"{api.url}/ui/runs?id={run_id}").status == 403
    assert "another tenant" in user.content()
