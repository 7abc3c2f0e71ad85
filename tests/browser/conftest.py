"""A real Chromium (Debian's package) driven by Playwright. `playwright install` cannot download browsers
on these machines; .ci/run installs `chromium` with apt-get when it is missing. Outside CI, without it, the
browser tests skip with one line saying how to get it."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.api.conftest import api_env, api_process, limited_keys  # noqa: F401 - fixtures reused here

CHROMIUM = os.environ.get("GENQUEUE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"no chromium at {CHROMIUM}: .ci/run should have installed it")
        pytest.skip("no chromium: apt-get install -y chromium (Debian) to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield b
        b.close()
