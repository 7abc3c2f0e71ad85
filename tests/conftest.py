"""One real server per test session: the embedded Valkey (fresh-machine path) or REDIS_URL when set.

Tests share the server but never a queue: each test gets its own queue name, so its RQ and DLQ keys are
its own. With REDIS_URL, point it at a database the suite may write to (e.g. redis://127.0.0.1:6379/15).
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_BACKOFF_SCALE = "0.01"  # base 5 s → 50 ms; policies and caps scale alike


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """(url, home) of the session's real server."""
    home = tmp_path_factory.mktemp("gqhome")
    url = os.environ.get("REDIS_URL")
    embedded = None
    if not url:
        from genqueue.backend.connection import EmbeddedServer

        embedded = EmbeddedServer(home)
        embedded.start()
        url = embedded.url
    yield url, home
    if embedded is not None:
        embedded.stop()


@pytest.fixture
def queue_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def env(server, queue_name, tmp_path) -> dict[str, str]:
    """Environment for CLI and worker subprocesses bound to this test's queue."""
    url, home = server
    e = {k: v for k, v in os.environ.items() if not k.startswith(("GENQUEUE_", "REDIS_URL"))}
    e.update(
        GENQUEUE_HOME=str(home),
        GENQUEUE_QUEUE=queue_name,
        GENQUEUE_BACKOFF_SCALE=TEST_BACKOFF_SCALE,
        GENQUEUE_LOG_FORMAT="json",
        GENQUEUE_SIM_LATENCY="0",
        # No random faults: a job whose payload has no "simulate" list must succeed, or tests that wait
        # for it to finish fail whenever their (random) queue name seeds a 401 draw.
        GENQUEUE_SIM_RATES="ok=1",
        # The session's server is shared and limit keys are per provider:model, not per queue: a test that
        # fails most of its calls on purpose would open `simulated:default`'s breaker for every test after it.
        # The breaker's own tests set a cooldown on keys of their own (limits set --cooldown).
        GENQUEUE_BREAKER_COOLDOWN="0",
        GENQUEUE_TEST_LOGDIR=str(tmp_path),
        PYTHONPATH=str(ROOT) + os.pathsep + e.get("PYTHONPATH", ""),
    )
    if os.environ.get("REDIS_URL"):
        e["REDIS_URL"] = url
    return e


@pytest.fixture
def settings(server, queue_name):
    from genqueue.settings import Settings

    url, home = server
    return Settings(redis_url=url, home=home, queue=queue_name, backoff_scale=float(TEST_BACKOFF_SCALE))


@pytest.fixture
def conn(settings):
    from genqueue.backend.connection import connect_url

    client = connect_url(settings.redis_url)
    yield client
    client.close()


@pytest.fixture
def store(conn, settings):
    from genqueue.dlq.store import DLQStore

    return DLQStore(conn, settings.queue, retention_s=settings.dlq_retention_s)


@pytest.fixture
def workers(env, queue_name, request):
    """Factory for real worker processes on this test's queue; all stopped at teardown."""
    from tests.helpers import WorkerProcess

    started: list[WorkerProcess] = []

    def start(*, simple: bool = False, extra: tuple[str, ...] = ()) -> WorkerProcess:
        w = WorkerProcess(env, queue_name, simple=simple, extra=extra)
        started.append(w)
        return w

    yield start
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
    for w in started:
        w.stop()
        if failed:
            sys.stderr.write(f"\n--- {w.log_path} ---\n{w.log()[-4000:]}\n")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
