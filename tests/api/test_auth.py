"""Authentication and the error envelope, through HTTP: every refusal is {"error": {...}} with its status."""

from __future__ import annotations

import time

import jwt

from tests.api.conftest import SECRET


def error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code and isinstance(body["message"], str) and "retryable" in body
    assert "Traceback" not in response.text
    return body


def test_no_token_expired_wrong_signature_alg_none_are_401(client, token):
    error(client.get("/api/jobs/x"), 401, "UNAUTHORIZED")
    error(client.get("/api/jobs/x", headers={"Authorization": "Basic abc"}), 401, "UNAUTHORIZED")
    expired = jwt.encode({"sub": "alice", "exp": int(time.time()) - 10}, SECRET, algorithm="HS256")
    assert (
        "expired"
        in error(client.get("/api/jobs/x", headers={"Authorization": f"Bearer {expired}"}), 401, "UNAUTHORIZED")[
            "message"
        ]
    )
    forged = jwt.encode(
        {"sub": "alice", "exp": int(time.time()) + 60}, "another-secret-another-secret-xx", algorithm="HS256"
    )
    error(client.get("/api/jobs/x", headers={"Authorization": f"Bearer {forged}"}), 401, "UNAUTHORIZED")
    unsigned = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, None, algorithm="none")
    assert (
        "not allowed"
        in error(client.get("/api/jobs/x", headers={"Authorization": f"Bearer {unsigned}"}), 401, "UNAUTHORIZED")[
            "message"
        ]
    )
    other_alg = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, SECRET, algorithm="HS512")
    error(client.get("/api/jobs/x", headers={"Authorization": f"Bearer {other_alg}"}), 401, "UNAUTHORIZED")
    no_exp = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")
    error(client.get("/api/jobs/x", headers={"Authorization": f"Bearer {no_exp}"}), 401, "UNAUTHORIZED")


def test_audience_and_issuer_are_checked_when_configured(settings, conn):
    from fastapi.testclient import TestClient

    from genqueue.api.app import create_app
    from genqueue.api.auth import mint
    from genqueue.api.config import ApiConfig

    config = ApiConfig("HS256", SECRET, SECRET, True, audience="genqueue", issuer="https://idp")
    with TestClient(create_app(settings, config, conn), raise_server_exceptions=False) as c:
        good = mint(config, sub="alice")
        assert c.get("/api/jobs/nope", headers={"Authorization": f"Bearer {good}"}).status_code == 404
        wrong_aud = jwt.encode({"sub": "a", "exp": int(time.time()) + 60, "aud": "x", "iss": "https://idp"}, SECRET)
        error(c.get("/api/jobs/nope", headers={"Authorization": f"Bearer {wrong_aud}"}), 401, "UNAUTHORIZED")


def test_non_admin_on_admin_routes_is_403(client, token):
    for method, path in [
        ("GET", "/api/dlq"),
        ("GET", "/api/dlq/stats"),
        ("GET", "/api/dlq/x"),
        ("POST", "/api/dlq/x/retry"),
        ("DELETE", "/api/dlq/x"),
        ("POST", "/api/dlq/retry"),
    ]:
        error(client.request(method, path, headers=token(), json={}), 403, "FORBIDDEN")


def test_unknown_route_405_malformed_json_oversized_body(client, token):
    error(client.get("/api/nope", headers=token()), 404, "NOT_FOUND")
    error(client.delete("/healthz"), 405, "METHOD_NOT_ALLOWED")
    error(
        client.post("/api/jobs", headers={**token(), "content-type": "application/json"}, content=b"{bad"),
        400,
        "VALIDATION_ERROR",
    )
    body = error(client.post("/api/jobs", headers=token(), json={"payload": {"prompt": ""}}), 400, "VALIDATION_ERROR")
    assert "prompt" in body["message"]
    body = error(
        client.post("/api/jobs", headers=token(), json={"payload": {"prompt": "x"}, "max_retries": -1}),
        400,
        "VALIDATION_ERROR",
    )
    assert "max_retries" in body["message"]
    error(
        client.post(
            "/api/jobs",
            headers={**token(), "content-type": "application/json"},
            content=b'{"payload": {"prompt": "' + b"a" * (1024 * 1024) + b'"}}',
        ),
        413,
        "PAYLOAD_TOO_LARGE",
    )


def test_health_is_open_and_openapi_describes_the_routes(client):
    assert client.get("/healthz").json() == {"data": {"status": "ok"}}
    assert client.get("/readyz").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/jobs",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/retry",
        "/api/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/retry-failed",
        "/api/dlq",
        "/api/dlq/stats",
        "/api/dlq/{job_id}",
        "/api/dlq/{job_id}/retry",
        "/api/dlq/retry",
    ):
        assert path in paths, path


def test_rate_limit_headers_on_every_limited_response(client, token):
    r = client.get("/api/jobs/nope", headers=token("counted"))
    assert r.status_code == 404
    assert r.headers["RateLimit-Limit"] == "1000" and int(r.headers["RateLimit-Remaining"]) == 999
    assert "X-Request-Id" in r.headers


def test_local_secret_is_private_and_other_hosts_need_a_real_key(tmp_path):
    import os
    import stat

    import pytest

    from genqueue.api.config import ApiConfig, check_bind
    from genqueue.errors import InvalidInput

    config = ApiConfig.from_env(tmp_path, {})
    assert not config.configured and config.algorithm == "HS256"
    assert stat.S_IMODE(os.stat(tmp_path / "api-jwt-secret").st_mode) == 0o600
    assert ApiConfig.from_env(tmp_path, {}).verify_key == config.verify_key  # made once, then reused
    check_bind("127.0.0.1", config)
    with pytest.raises(InvalidInput, match="refusing to listen"):
        check_bind("0.0.0.0", config)
    check_bind("0.0.0.0", ApiConfig.from_env(tmp_path, {"GENQUEUE_API_JWT_SECRET": SECRET}))
    with pytest.raises(InvalidInput, match="at least 32"):
        ApiConfig.from_env(tmp_path, {"GENQUEUE_API_JWT_SECRET": "short"})
