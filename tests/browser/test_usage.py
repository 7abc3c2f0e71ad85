"""The Usage page in a real Chromium against a real `genqueue api` process: the chart of spend per hour (one
line per tenant, inline SVG drawn on the server), the totals and the budgets; a tenant's session sees its own
tenant only, whatever it asks for. The screenshot is written to /tmp/usage.png (and, with
GENQUEUE_SCREENSHOTS_TO_DOCS=1, to docs/dashboard-usage.png)."""

from __future__ import annotations

import os
import shutil
import time
import uuid

from genqueue.usage.budget_store import clear_budget, set_budget
from genqueue.usage.budgets import make_budget, parse_cap
from tests.browser.test_dashboard import login_url
from tests.conftest import ROOT
from tests.helpers import run_cli
from tests.usage_helpers import record


def test_usage_page_charts_spend_per_tenant(browser, api_process, api_env, conn, tmp_path):
    tag = uuid.uuid4().hex[:4]
    acme, globex = f"acme-{tag}", f"globex-{tag}"
    now = time.time()
    for h in range(24):
        record(conn, acme, "usd", 0.5 + (h % 6) * 0.4, task="chat", key="openai:gpt-4o", at=now - h * 3600)
        record(conn, acme, "tokens", 1000 + h * 50, task="chat", key="openai:gpt-4o", at=now - h * 3600)
        if h % 2 == 0:
            record(conn, globex, "usd", 1.2, task="image", key="openai:gpt-image-1", at=now - h * 3600)
    record(conn, globex, "usd", 5, task="image", key="openai:gpt-image-1", at=now)  # its 5/d is spent today
    set_budget(conn, acme, make_budget([parse_cap("usd", "20/d"), parse_cap("tokens", "2M/month")]))
    set_budget(conn, globex, make_budget([parse_cap("usd", "5/d")], "park"))
    try:
        api = api_process()
        tab = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        tab.goto(login_url(api_env, api))
        tab.click("header nav >> text=Usage")
        assert tab.url.endswith("/ui/usage")
        lines = tab.locator("#usage-chart polyline.series")
        names = {lines.nth(i).get_attribute("data-name") for i in range(lines.count())}
        assert {acme, globex} <= names
        row = tab.locator(f'#usage-totals tr[data-tenant="{acme}"]')
        assert row.locator("td.tokens").inner_text().strip() != "0"
        states = tab.locator(f'#budgets tr[data-tenant="{globex}"] td.state').inner_text().strip()
        assert states == "spent"
        shot = "/tmp/usage.png"
        tab.screenshot(path=shot, full_page=True)
        shutil.copyfile(shot, tmp_path / "usage.png")
        if os.environ.get("GENQUEUE_SCREENSHOTS_TO_DOCS"):
            shutil.copyfile(shot, ROOT / "docs" / "dashboard-usage.png")
        tab.goto(f"{api.url}/ui/usage?tenant={acme}&by=key&unit=usd&since=24h")
        assert tab.locator('#usage-chart polyline.series[data-name="openai:gpt-4o"]').count() == 1

        r = run_cli(api_env, "api", "token", "--sub", "bob", "--tenant", acme, "--login", "--url", api.url)
        user = browser.new_page()
        user.goto(r.stdout.strip().splitlines()[-1])
        user.goto(f"{api.url}/ui/usage?tenant={globex}")  # forced to its own tenant
        assert globex not in user.content() and acme in user.content()
        assert user.locator("#budgets tr[data-tenant]").count() == 2  # its own two caps
    finally:
        clear_budget(conn, acme)
        clear_budget(conn, globex)
