"""A server in cluster mode (or a Sentinel given as a plain URL) is refused in one line at connect: the CLI and a
worker exit 2, readyz says why."""

from __future__ import annotations

import pytest

from tests.ha_servers import cluster_port, data_node
from tests.helpers import WorkerProcess, run_cli, wait_for


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory):
    node = data_node(tmp_path_factory.mktemp("cluster"), "node", "--cluster-enabled", "yes", port=cluster_port())
    node.start()
    yield f"redis://127.0.0.1:{node.port}/0"
    node.kill()


def test_the_cli_refuses_a_cluster_node_in_one_line(cluster_url, env):
    result = run_cli(dict(env, REDIS_URL=cluster_url), "enqueue", "--payload", '{"prompt": "p"}')
    assert result.code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "Redis Cluster" in line and "redis+sentinel://" in line


def test_a_worker_refuses_a_cluster_node_in_one_line(cluster_url, env, queue_name):
    worker = WorkerProcess(dict(env, REDIS_URL=cluster_url), queue_name)
    wait_for(lambda: not worker.alive(), timeout=30, message="the worker to refuse the server")
    worker.stop()
    assert worker.proc.returncode == 2
    log = worker.log()
    assert "Traceback" not in log
    [line] = [ln for ln in log.splitlines() if ln.startswith("error: ")]
    assert "Redis Cluster" in line


def test_readyz_says_why(cluster_url, tmp_path):
    from fastapi.testclient import TestClient

    from genqueue.api.app import create_app
    from genqueue.settings import Settings

    app = create_app(Settings(redis_url=cluster_url, home=tmp_path))
    with TestClient(app) as client:
        r = client.get("/readyz")
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["code"] == "UNSUPPORTED_SERVER" and "Redis Cluster" in error["message"]
    assert error["retryable"] is False


def test_a_sentinel_given_as_a_plain_url_is_refused_in_one_line(env, tmp_path):
    from tests.ha_servers import Group

    group = Group(tmp_path / "ha", replicas=0, sentinels=1)
    for node in group.data + group.sentinels:
        node.start()
    try:
        url = f"redis://127.0.0.1:{group.sentinels[0].port}"
        result = run_cli(dict(env, REDIS_URL=url), "enqueue", "--payload", '{"prompt": "p"}')
    finally:
        group.stop()
    assert result.code == 2
    [line] = result.stderr.strip().splitlines()
    assert "is a Sentinel" in line and "redis+sentinel://" in line
