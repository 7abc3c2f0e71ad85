"""The Providers page in a real Chromium against a real `genqueue api` process, over limit state real workers
made: a key holding its one slot with two jobs parked behind it, a key paused by a 429's Retry-After, a key
with a rate and unit limits (tokens, usd) set. Admins reach it from the nav; a tenant's session is refused it
and has no link.

GENQUEUE_SCREENSHOTS_TO_DOCS=1 also writes the screenshot to docs/dashboard-providers.png (the README's)."""

from __future__ import annotations

import os
import re
import shutil
import uuid

from genqueue.limits.store import set_limits
from tests.browser.test_dashboard import login_url
from tests.conftest import ROOT
from tests.helpers import run_cli


def test_providers_page_shows_each_keys_state(browser, api_process, api_env, conn, limited_keys, tmp_path):
    rated = f"openai:gpt-image-{uuid.uuid4().hex[:4]}"
    set_limits(conn, rated, rate="5/s", units={"tokens": "90k/m", "usd": "200/d"})
    api = api_process()
    tab = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
    tab.goto(login_url(api_env, api))
    tab.click("header nav >> text=Providers")
    assert tab.url.endswith("/ui/providers")

    def cells(key: str) -> dict[str, str]:
        row = tab.locator(f'#limits tr[data-key="{key}"]')
        return {
            name: row.locator(f"td.{name}").inner_text().strip()
            for name in ("state", "in-flight", "rate", "units", "parked", "throttled", "paused", "rate-limited")
        }

    held = cells(limited_keys.held)
    assert (held["state"], held["in-flight"], held["parked"], held["throttled"]) == ("closed", "1 / 1", "2", "2")
    paused = cells(limited_keys.paused)
    assert re.fullmatch(r"paused [45] min( \d+ s)? left", paused["state"]), paused["state"]  # 300 s, counting down
    assert (paused["in-flight"], paused["rate-limited"]) == ("0 / –", "1")
    assert cells(rated)["rate"].startswith("5/s") and cells(rated)["state"] == "closed"
    assert cells(rated)["units"].split("\n") == ["tokens 0 + 0 / 90k/m", "usd 0 + 0 / 200/d"]
    assert held["units"] == "–"
    badge = tab.locator(f'#limits tr[data-key="{limited_keys.paused}"] .badge')
    assert "paused" in badge.get_attribute("class")
    shot = tmp_path / "providers.png"
    tab.screenshot(path=str(shot), full_page=True)
    if os.environ.get("GENQUEUE_SCREENSHOTS_TO_DOCS"):
        shutil.copyfile(shot, ROOT / "docs" / "dashboard-providers.png")
    print(f"\nscreenshot: {shot}")

    r = run_cli(api_env, "api", "token", "--sub", "bob", "--tenant", "acme", "--login", "--url", api.url)
    user = browser.new_page()
    user.goto(r.stdout.strip().splitlines()[-1])
    assert user.locator("header nav >> text=Providers").count() == 0
    assert user.goto(f"{api.url}/ui/providers").status == 403
    assert "for admins" in user.content() and limited_keys.held not in user.content()
