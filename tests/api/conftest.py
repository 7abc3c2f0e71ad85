"""The HTTP service under test: in-process (FastAPI's TestClient over the real server) for route behaviour,
and real `genqueue api` processes for concurrency, the shared rate limit and outages."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from tests.api.limits_lab import limited_keys  # noqa: F401 - a fixture: real limit state made by workers

SECRET = "test-secret-of-at-least-thirty-two-characters"


@pytest.fixture
def api_config():
    from genqueue.api.config import ApiConfig

    return ApiConfig("HS256", SECRET, SECRET, True, rate_limit="1000/minute")


@pytest.fixture
def client(settings, conn, api_config):
    from fastapi.testclient import TestClient

    from genqueue.api.app import create_app

    with TestClient(create_app(settings, api_config, conn), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def token(api_config):
    from genqueue.api.auth import mint

    def make(sub: str = "alice", *, tenant: str | None = None, admin: bool = False, ttl_s: float = 600) -> dict:
        return {"Authorization": f"Bearer {mint(api_config, sub=sub, tenant=tenant, admin=admin, ttl_s=ttl_s)}"}

    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiProcess:
    def __init__(self, env: dict[str, str], log_dir: str, port: int | None = None) -> None:
        self.port = port or free_port()  # a port given: a restart at the same address (clients reconnect)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(log_dir, f"api-{self.port}.log")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "genqueue", "api", "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"genqueue api did not come up:\n{open(self.log_path).read()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


@pytest.fixture
def api_env(env):
    return dict(env, GENQUEUE_API_JWT_SECRET=SECRET)


@pytest.fixture
def api_process(api_env, tmp_path):
    started: list[ApiProcess] = []

    def start(port: int | None = None, **extra: str) -> ApiProcess:
        p = ApiProcess(dict(api_env, **extra), str(tmp_path), port)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
