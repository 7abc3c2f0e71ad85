"""The fresh-machine path: the embedded Valkey server started by the CLI, shared, persistent."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from genqueue.backend.connection import EmbeddedServer, connect_url
from genqueue.dlq.store import DLQStore
from genqueue.jobs.enqueue import enqueue
from tests.helpers import run_cli


@pytest.fixture
def home_env(tmp_path):
    home = tmp_path / "h"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENQUEUE_", "REDIS_URL"))}
    env.update(GENQUEUE_HOME=str(home), PYTHONPATH=os.getcwd())
    yield home, env
    EmbeddedServer(home).stop()


def test_two_processes_starting_at_once_make_one_server(home_env):
    home, env = home_env
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "genqueue", "server", "start", "--json"], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    import json

    results = [json.loads(o) for o in outs]
    assert sum(r["started"] for r in results) == 1
    assert len({r["pid"] for r in results}) == 1
    status = run_cli(env, "server", "status", "--json").json()
    assert status["running"] and status["pid"] == results[0]["pid"]


def test_any_command_starts_it_and_data_survives_a_restart(home_env):
    home, env = home_env
    assert run_cli(env, "dlq", "list", "--json").json()["total"] == 0  # first use starts the server
    server = EmbeddedServer(home)
    conn = connect_url(server.url)
    enqueue(conn, "persist-q", {"prompt": "x"}, job_id="keep-1")
    store = DLQStore(conn, "persist-q", retention_s=3600)
    entry_key = store.keys.entry("e-1")
    conn.set(entry_key, "{}", ex=3600)
    conn.close()
    assert run_cli(env, "server", "stop").stdout.strip() == "stopped"
    assert not server.status().running
    assert run_cli(env, "server", "start").code == 0
    conn = connect_url(server.url)
    assert conn.lrange("rq:queue:persist-q", 0, -1) == [b"keep-1"]
    assert conn.hget("rq:job:keep-1", "status") == b"queued"
    assert 0 < conn.ttl(entry_key) <= 3600  # expiry survives the restart too
    conn.close()


def test_server_commands_refuse_when_redis_url_is_set(home_env):
    _, env = home_env
    r = run_cli(dict(env, REDIS_URL="redis://127.0.0.1:1/0"), "server", "start")
    assert r.code == 2 and "REDIS_URL is set" in r.stderr
