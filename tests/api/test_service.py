"""Real `genqueue api` processes: exactly-once under concurrent clicks, one rate limit shared by two
processes, and Redis down → 503 (and back) without the service exiting."""

from __future__ import annotations

import httpx

from genqueue.jobs.enqueue import enqueue
from genqueue.tenants.fair import waiting_ids
from tests.api.test_jobs_api import drain
from tests.helpers import race

TRIALS = 50


def bearer(config_secret: str, sub: str, **kw) -> dict:
    from genqueue.api.auth import mint
    from genqueue.api.config import ApiConfig

    config = ApiConfig("HS256", config_secret, config_secret, True)
    return {"Authorization": f"Bearer {mint(config, sub=sub, **kw)}"}


def double_clicks(base_url: str, headers: dict, paths: list[str]) -> list[tuple[int, int]]:
    """POST each path twice at once (threads released together); the sorted pair of statuses per path."""
    outcomes = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        for path in paths:
            statuses: list[int] = []

            def click(path=path, statuses=statuses):
                statuses.append(http.post(path).status_code)

            race(click, click, expected=())
            outcomes.append(tuple(sorted(statuses)))
    return outcomes


def test_two_concurrent_retries_of_one_dead_job_exactly_one_wins(api_process, conn, settings, env):
    from tests.api.conftest import SECRET

    api = api_process(GENQUEUE_API_RATE_LIMIT="10000/minute")
    ids = [
        enqueue(conn, settings.queue, {"prompt": f"p{i}", "simulate": ["401"]}, tenant="alice").job.id
        for i in range(TRIALS)
    ]
    drain(env)
    outcomes = double_clicks(api.url, bearer(SECRET, "alice"), [f"/api/jobs/{job_id}/retry" for job_id in ids])
    assert set(outcomes) == {(200, 409)}, outcomes
    queued = sum(waiting_ids(conn, settings.queue).count(j) for j in ids)
    assert queued == TRIALS  # each job enqueued once


def test_two_concurrent_continues_charge_credits_once(api_process, conn, settings, env):
    from genqueue.runs.store import submit
    from genqueue.tenants import credits
    from tests.api.conftest import SECRET

    api = api_process(GENQUEUE_API_RATE_LIMIT="10000/minute")
    tenant = "credit-race"
    runs = [
        submit(
            conn,
            settings.queue,
            [{"prompt": "x", "simulate": ["500"]}],
            ttl_s=3600,
            max_retries=0,
            run_id=f"race-{settings.queue}-{i}",
            tenant=tenant,
        ).run.run_id
        for i in range(TRIALS)
    ]
    drain(env)
    credits.set_balance(conn, tenant, TRIALS)
    outcomes = double_clicks(
        api.url, bearer(SECRET, "u", tenant=tenant), [f"/api/runs/{run_id}/retry-failed" for run_id in runs]
    )
    assert set(outcomes) == {(200, 409)}, outcomes
    assert credits.balance(conn, tenant) == 0  # one credit per run: charged once each


def test_the_rate_limit_is_shared_by_two_api_processes(api_process):
    from tests.api.conftest import SECRET

    apis = [api_process(GENQUEUE_API_RATE_LIMIT="60/minute") for _ in range(2)]
    h = bearer(SECRET, "limited-user")
    statuses = []
    for i in range(60):
        statuses.append(httpx.get(f"{apis[i % 2].url}/api/jobs/nope", headers=h).status_code)
    assert statuses == [404] * 60
    r = httpx.get(f"{apis[0].url}/api/jobs/nope", headers=h)
    assert r.status_code == 429 and r.json()["error"]["code"] == "RATE_LIMITED"
    assert int(r.headers["Retry-After"]) >= 1 and r.headers["RateLimit-Remaining"] == "0"
    assert httpx.get(f"{apis[1].url}/api/jobs/nope", headers=bearer(SECRET, "someone-else")).status_code == 404
    assert httpx.get(f"{apis[1].url}/healthz").status_code == 200  # exempt


def test_redis_down_is_503_and_the_service_keeps_running(api_process, tmp_path):
    from genqueue.backend.connection import EmbeddedServer
    from tests.api.conftest import SECRET

    home = tmp_path / "srv"
    server = EmbeddedServer(home)
    server.start()
    api = api_process(GENQUEUE_HOME=str(home), REDIS_URL=server.url)
    h = bearer(SECRET, "alice")
    try:
        assert httpx.get(f"{api.url}/api/jobs/nope", headers=h).status_code == 404
        server.stop()
        r = httpx.get(f"{api.url}/api/jobs/nope", headers=h)
        assert r.status_code == 503 and r.json()["error"] == {
            "code": "UNAVAILABLE",
            "message": "the job store (Redis) is unreachable; try again shortly",
            "retryable": True,
        }
        assert httpx.get(f"{api.url}/readyz").status_code == 503
        assert httpx.get(f"{api.url}/healthz").status_code == 200
        server.start()
        assert httpx.get(f"{api.url}/api/jobs/nope", headers=h).status_code == 404  # back, no restart
        assert api.proc.poll() is None
        assert "Traceback" not in open(api.log_path).read()
    finally:
        server.stop()
